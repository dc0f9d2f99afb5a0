"""The emulator's expression evaluator on hand-written graphs (no HTTP, no ee client)."""

from __future__ import annotations

import numpy as np
import pytest

from gee_emulator.evaluator import (
    EvaluationError,
    Evaluator,
    FeatureCollection,
    Image,
    function_names,
    to_json,
)
from gee_emulator.outputs import pixel_grid


def call(name: str, **args) -> dict:
    return {"functionInvocationValue": {"functionName": name, "arguments": args}}


def const(v) -> dict:
    return {"constantValue": v}


def graph(root: dict, **values: dict) -> dict:
    return {"result": "0", "values": {"0": root, **values}}


def evaluator(tables=None) -> Evaluator:
    tables = tables or {}

    def load_table(table_id):
        if table_id not in tables:
            raise EvaluationError(f"Collection.loadTable: Collection asset '{table_id}' not found.")
        return tables[table_id]

    return Evaluator(load_table, lambda i: (_ for _ in ()).throw(EvaluationError("no images")))


def point(x, y, **props):
    return call(
        "Feature",
        geometry=call("GeometryConstructors.Point", coordinates=const([x, y])),
        metadata=const(props),
    )


def test_band_maths_and_clip_give_pixel_values_and_masks():
    rect = call("GeometryConstructors.Rectangle", coordinates=const([0, 0, 1, 1]))
    image = call(
        "Image.clip",
        input=call("Image.add", image1=call("Image.pixelLonLat"), image2=call("Image.constant", value=const(10))),
        geometry=rect,
    )
    img = evaluator().evaluate(graph(image))
    assert isinstance(img, Image) and [b.name for b in img.bands] == ["longitude", "latitude"]
    values, valid = img.sample(np.array([0.5, 2.0]), np.array([0.25, 0.5]))
    assert values["longitude"].tolist() == [10.5, 12.0]
    assert values["latitude"].tolist() == [10.25, 10.5]
    assert valid.tolist() == [True, False]


def test_value_references_are_shared_and_collections_merge():
    fc = call("Collection", features={"arrayValue": {"values": [point(1, 2, a=1), point(3, 4, a=2)]}})
    expr = graph(
        call(
            "Collection.size",
            collection=call(
                "Collection.merge", collection1={"valueReference": "1"}, collection2={"valueReference": "1"}
            ),
        ),
        **{"1": fc},
    )
    assert evaluator().evaluate(expr) == 4


def test_load_table_reads_stored_features_and_reports_missing_assets():
    stored = evaluator().evaluate(graph(call("Collection", features={"arrayValue": {"values": [point(0, 0, k=5)]}})))
    ev = evaluator({"projects/p/assets/t": stored.features})
    fc = ev.evaluate(graph(call("Collection.loadTable", tableId=const("projects/p/assets/t"))))
    assert isinstance(fc, FeatureCollection)
    assert to_json(fc)["features"][0]["properties"] == {"k": 5}
    with pytest.raises(EvaluationError, match="'projects/p/assets/missing' not found"):
        ev.evaluate(graph(call("Collection.loadTable", tableId=const("projects/p/assets/missing"))))


def test_sample_regions_reads_band_values_at_points():
    pts = call("Collection", features={"arrayValue": {"values": [point(1.5, 2.5, pid=1), point(-3, 4, pid=2)]}})
    expr = graph(call("Image.sampleRegions", image=call("Image.pixelLonLat"), collection=pts))
    rows = [f.properties for f in evaluator().evaluate(expr).features]
    assert rows == [
        {"pid": 1, "longitude": 1.5, "latitude": 2.5},
        {"pid": 2, "longitude": -3.0, "latitude": 4.0},
    ]


def test_functions_not_evaluated_exactly_are_synthesized_or_refused_when_strict():
    expr = graph(call("Image.focal_max", image=call("Image.constant", value=const(1))))
    assert function_names(expr) == {"Image.focal_max", "Image.constant"}
    ev = evaluator()
    image = ev.evaluate(expr)
    assert isinstance(image, Image) and [b.name for b in image.bands] == ["constant"]
    assert ev.synthesized == ["Image.focal_max"]
    strict = Evaluator(lambda t: [], lambda i: None, strict=True)
    with pytest.raises(EvaluationError, match=r"'Image\.focal_max'"):
        strict.evaluate(expr)


def test_pixel_grid_snaps_the_region_to_whole_pixels():
    rect = call("GeometryConstructors.Rectangle", coordinates=const([13.2134, 52.4152, 13.3019, 52.4873]))
    img = evaluator().evaluate(
        graph(
            call(
                "Image.clipToBoundsAndScale",
                input=call("Image.constant", value=const(1)),
                geometry=rect,
                scale=const(100),
            )
        )
    )
    grid = pixel_grid(img)
    px = 100 / 111319.49079327357
    assert grid.pixel == pytest.approx(px)
    assert grid.x0 <= 13.2134 < grid.x0 + px
    assert grid.x0 + grid.width * px >= 13.3019 > grid.x0 + (grid.width - 1) * px
    assert grid.y0 >= 52.4873 > grid.y0 - px
