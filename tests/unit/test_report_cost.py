"""The run report says what each tile and the whole run cost in EECU, and what that comes to at
the plan's price."""

from __future__ import annotations

import json

from airflow_provider_gee.utils.compact_tiles import compact_tiles
from airflow_provider_gee.utils.report import build_manifest

TILES = [{"tile_id": t, "bbox": [0, 0, 1, 1]} for t in ("a", "b", "c")]


def export(tile: str, eecu: float | None) -> dict:
    return {"tile_id": tile, "operation": f"projects/p/operations/{tile}", "state": "SUCCEEDED", "eecu_seconds": eecu}


def test_costs_per_tile_and_for_the_run():
    exports = [export("a", 1800.0), json.dumps(export("b", 5400.0)), None]  # b as Airflow hands over JSON text
    manifest = build_manifest(TILES, exports, [], price_per_eecu_hour=0.40)
    assert [r["eecu_seconds"] for r in manifest["records"]] == [1800.0, 5400.0, None]
    assert manifest["cost"] == {"eecu_seconds": 7200.0, "eecu_hours": 2.0, "price_per_eecu_hour": 0.40,
                                "estimate": 0.8}  # fmt: skip
    assert build_manifest(TILES, exports, [])["cost"] == {"eecu_seconds": 7200.0, "eecu_hours": 2.0}


def test_the_report_maps_the_tiles_by_cost_when_ee_reported_it(tmp_path):
    tiles = [{"tile_id": t, "bbox": [i, 0, i + 1, 1],
              "geometry": {"type": "Polygon", "coordinates": [[[i, 0], [i + 1, 0], [i + 1, 1], [i, 1], [i, 0]]]}}
             for i, t in enumerate(("a", "b", "c"))]  # fmt: skip
    from airflow_provider_gee.utils.report import write_report

    paid = write_report(build_manifest(tiles, [export("a", 10.0), export("b", 30.0)], []), tiles, tmp_path / "paid")
    assert set(paid) == {"manifest", "map", "cost_map"} and (tmp_path / "paid" / "tiles_cost.png").stat().st_size > 0
    free = write_report(build_manifest(tiles, [export("a", None)], []), tiles, tmp_path / "free")
    assert set(free) == {"manifest", "map"}
    compact = compact_tiles(tiles)  # as GridTilesOperator returns them: no geometry
    assert "geometry" not in compact[0]
    assert set(write_report(build_manifest(compact, [export("a", 1.0)], []), compact, tmp_path / "compact")) == {
        "manifest", "map", "cost_map"}  # fmt: skip
