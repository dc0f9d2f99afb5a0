"""The bad-input table: each input a user can get wrong, the exact message they get, and proof that
nothing remote was changed (no export submitted, no asset or Drive file created or deleted).

README.md's "Guarantees" section lists these cases; keep the two in step.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import geopandas as gpd
import pytest
import shapely

from airflow_provider_gee.hooks.drive import DriveHook
from airflow_provider_gee.hooks.earth_engine import EarthEngineHook
from airflow_provider_gee.operators.assets import GeeAssetCleanupOperator
from airflow_provider_gee.operators.export import GeeExportOperator
from airflow_provider_gee.operators.harvest import DriveHarvestOperator
from airflow_provider_gee.operators.stitch import MosaicOperator, TableStitchOperator
from airflow_provider_gee.operators.tiling import GridTilesOperator, PointChunksOperator

pytestmark = pytest.mark.integration

#: routes that change something remote: none may be called for bad input
CHANGING_ROUTES = ("ee.image.export", "ee.table.export", "ee.assets.create", "ee.assets.delete", "ee.assets.copy",
                   "drive.files.delete", "drive.files.create", "drive.files.update")  # fmt: skip
TILE = {"tile_id": "r1c1", "geometry": {"type": "Polygon", "coordinates": [[[13, 52], [13.1, 52], [13.1, 52.1],
                                                                              [13, 52]]]}}  # fmt: skip


def build(tile: dict, context: Any) -> Any:
    import ee

    return ee.Image.constant(1)


def grid(tmp: Path, region: Any, **kw: Any) -> Any:
    return GridTilesOperator(task_id="tiles", region=region, cell_size=kw.pop("cell_size", 0.1), **kw).execute({})


def export(conn: str, **kw: Any) -> Any:
    args = {"task_id": "export", "build": build, "tile": TILE, "gcp_conn_id": conn, "scale": 30, **kw}
    return GeeExportOperator(**args).validate()


def _file(tmp: Path, name: str, text: str) -> str:
    (tmp / name).write_text(text)
    return str(tmp / name)


def _two_layers(tmp: Path) -> str:
    path = tmp / "two.gpkg"
    frame = gpd.GeoDataFrame(geometry=[shapely.box(13, 52, 13.1, 52.1)], crs="EPSG:4326")
    frame.to_file(path, layer="a")
    frame.to_file(path, layer="b")
    return str(path)


def _no_crs(tmp: Path) -> str:
    path = tmp / "nocrs.shp"
    gpd.GeoDataFrame(geometry=[shapely.box(13, 52, 13.1, 52.1)]).to_file(path)
    return str(path)


def _hook_with_key(emu: Any, key: str) -> EarthEngineHook:
    """A hook on a connection whose key is not JSON, or whose private key is damaged."""
    conn = emu.connection()
    if key == "damaged":
        keyfile = json.loads(conn["extra"]["keyfile_dict"])
        keyfile["private_key"] = "-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n"
        key = json.dumps(keyfile)
    conn["extra"]["keyfile_dict"] = key
    os.environ["AIRFLOW_CONN_GEE_BADKEY"] = json.dumps(conn)
    return EarthEngineHook(gcp_conn_id="gee_badkey")


def _twin_folders(conn: str) -> None:
    drive = DriveHook(gcp_conn_id=conn).get_conn()
    for _ in range(2):
        drive.files().create(body={"name": "exports", "mimeType": "application/vnd.google-apps.folder"}).execute()


def _outside_project(conn: str) -> None:
    import ee

    hook = EarthEngineHook(gcp_conn_id=conn)
    hook.initialize_ee()
    hook.start_export(ee.FeatureCollection([]), kind="table", destination="asset", request_id="x", description="x",
                      assetId="projects/someone-elses-project/assets/t")  # fmt: skip


# (case, how to provoke it, exact message or a regex for messages that quote a library)
CASES: list[tuple[str, Callable[[Path, str, Any], Any], str]] = [
    (
        "region file missing",
        lambda t, c, e: grid(t, str(t / "roi.gpkg")),
        "Region file '{tmp}/roi.gpkg' does not exist: give the path to a GeoPackage, shapefile or GeoJSON file.",
    ),
    (
        "region file not vector data",
        lambda t, c, e: grid(t, _file(t, "roi.gpkg", "not a geopackage")),
        r"re:^Region file '.*roi\.gpkg' cannot be read as vector data \(.+\): "
        r"use a GeoPackage, shapefile or GeoJSON\.$",
    ),
    (
        "region file with several layers",
        lambda t, c, e: grid(t, _two_layers(t)),
        "Region file '{tmp}/two.gpkg' has 2 layers (a, b): pass layer=... to choose one.",
    ),
    (
        "region file: unknown layer",
        lambda t, c, e: grid(t, _two_layers(t), layer="c"),
        "Region file '{tmp}/two.gpkg' has no layer 'c'; its layers are: a, b.",
    ),
    (
        "empty region",
        lambda t, c, e: grid(t, _file(t, "e.geojson", '{"type": "FeatureCollection", "features": []}')),
        "Region '{tmp}/e.geojson' is empty: it holds no geometry to tile.",
    ),
    (
        "region without CRS",
        lambda t, c, e: grid(t, _no_crs(t)),
        "Region file '{tmp}/nocrs.shp' has no CRS: give the data a CRS (e.g. `ogr2ogr -a_srs EPSG:4326 ...`) or pass "
        "region_crs='EPSG:...' to state the CRS its coordinates are in.",
    ),
    (
        "invalid WKT",
        lambda t, c, e: grid(t, "POLYGON ((13 52, 13.1 52"),
        r"re:^Region 'POLYGON \(\(13 52, 13\.1 52' is not valid WKT: .+\.$",
    ),
    (
        "bbox with min > max",
        lambda t, c, e: grid(t, [13.3, 52.4, 13.2, 52.5]),
        "Region [13.3, 52.4, 13.2, 52.5]: a bbox must be (minx, miny, maxx, maxy) with min < max.",
    ),
    (
        "cell size <= 0",
        lambda t, c, e: grid(t, [13, 52, 13.1, 52.1], cell_size=0),
        "cell_size must be a positive number, got 0.",
    ),
    (
        "overlap >= cell size",
        lambda t, c, e: grid(t, [13, 52, 13.1, 52.1], overlap=0.1),
        "overlap must be >= 0 and smaller than cell_size (0.1), got 0.1.",
    ),
    (
        "metres on a geographic CRS",
        lambda t, c, e: grid(t, [13, 52, 13.1, 52.1], units="metres", crs="EPSG:4326"),
        "units='metres' needs a projected CRS, got EPSG:4326: pass crs='EPSG:...' (a UTM zone or an equal-area CRS) "
        "or use units='degrees'.",
    ),
    (
        "too many tiles",
        lambda t, c, e: grid(t, [13, 52, 14, 53], cell_size=0.01, max_tiles=100),
        "The grid would have at least 6,400 tiles, more than max_tiles=100: use a larger cell_size, a smaller region, "
        "or raise max_tiles.",
    ),
    (
        "points: max_points <= 0",
        lambda t, c, e: PointChunksOperator(task_id="p", points="x.gpkg", max_points=0).execute({}),
        "max_points must be a positive integer, got 0.",
    ),
    (
        "description with forbidden characters",
        lambda t, c, e: export(c, description="tile/1 (v2)"),
        "description='tile/1 (v2)': EE allows 1-100 characters of A-Z a-z 0-9 . , : ; _ -.",
    ),
    (
        "description too long",
        lambda t, c, e: export(c, description="d" * 101),
        f"description='{'d' * 101}': EE allows 1-100 characters of A-Z a-z 0-9 . , : ; _ -.",
    ),
    (
        "unknown export destination",
        lambda t, c, e: export(c, destination="dropbox"),
        "destination='dropbox': use one of ('drive', 'asset', 'gcs').",
    ),
    (
        "unknown export type",
        lambda t, c, e: export(c, export_type="video"),
        "export_type='video': use one of ('image', 'table').",
    ),
    (
        "asset export without {tile_id}",
        lambda t, c, e: export(c, destination="asset", asset_id="out/tile"),
        "asset_id='out/tile' has no '{tile_id}': every tile would write the same asset.",
    ),
    (
        "Cloud Storage export without bucket",
        lambda t, c, e: export(c, destination="gcs"),
        "destination='gcs' needs bucket='my-bucket'.",
    ),
    ("scale <= 0", lambda t, c, e: export(c, scale=-30), "scale must be a positive number of metres, got -30."),
    (
        "unknown crs",
        lambda t, c, e: export(c, crs="EPSG:999999"),
        "crs='EPSG:999999' is not a coordinate reference system: use an EPSG code such as 'EPSG:32633' "
        "or a WKT string.",
    ),
    (
        "crs_transform of the wrong shape",
        lambda t, c, e: export(c, crs_transform=[30, 0, 0]),
        "crs_transform must be 6 numbers [xScale, xShearing, xTranslation, yShearing, yScale, yTranslation], "
        "got [30, 0, 0].",
    ),
    (
        "export asset outside the project",
        lambda t, c, e: _outside_project(c),
        "Export destination 'projects/someone-elses-project/assets/t' is outside project 'gee-test-project' of "
        "connection 'gee_test': give a path relative to the project (e.g. 'exports/tile_1') or use a connection for "
        "the other project.",
    ),
    (
        "Drive folder not found",
        lambda t, c, e: DriveHarvestOperator(
            task_id="h", folder="no_such_folder", destination=str(t / "out"), gcp_conn_id=c
        ).execute({}),
        "Drive folder 'no_such_folder' was not found with connection 'gee_test': check the name, or that the folder is "
        "shared with the service account.",
    ),
    (
        "ambiguous Drive folder",
        lambda t, c, e: DriveHarvestOperator(
            task_id="h", folder="exports", destination=str(t / "o"), gcp_conn_id=c
        ).execute({}),
        r"re:^Drive folder 'exports' is ambiguous: 2 folders match \(ids: .+\)\. Pass folder_id=\.\.\. or a longer "
        r"path\.$",
    ),
    (
        "harvest destination not writable",
        lambda t, c, e: DriveHarvestOperator(
            task_id="h", folder="x", destination=_file(t, "f", "") + "/sub", gcp_conn_id=c
        ).execute({}),
        "destination '{tmp}/f/sub' cannot be created: Not a directory.",
    ),
    (
        "missing connection",
        lambda t, c, e: EarthEngineHook(gcp_conn_id="no_such_conn").project,
        "The conn_id `no_such_conn` isn't defined",
    ),
    (
        "connection key that is not JSON",
        lambda t, c, e: _hook_with_key(e, "{not json").get_operation("x"),
        "The service-account key of connection 'gee_badkey' cannot be used (Invalid key JSON.): give the JSON key "
        "file Google issued, unchanged, as keyfile_dict or key_path (create a new key if it is damaged).",
    ),
    (
        "connection key with a damaged private key",
        lambda t, c, e: _hook_with_key(e, "damaged").get_operation("x"),
        r"re:^The service-account key of connection 'gee_badkey' cannot be used \(Unable to load PEM file\..*\): "
        r"give the JSON key file Google issued, unchanged, as keyfile_dict or key_path \(create a new key if it is "
        r"damaged\)\.$",
    ),
    (
        "cleanup pattern escaping its folder",
        lambda t, c, e: GeeAssetCleanupOperator(task_id="c", folder="tmp", pattern="../*", gcp_conn_id=c).execute({}),
        "Pattern '../*' could reach outside its folder: use a pattern relative to the folder, without '..' or a "
        "leading '/'.",
    ),
    (
        "mosaic mean without a COG",
        lambda t, c, e: MosaicOperator(task_id="m", harvest_results=[], destination=str(t), overlap="mean"),
        "overlap='mean' averages pixels, which a VRT cannot express: set cog=True (or use 'first'/'last').",
    ),
    (
        "table output of an unknown format",
        lambda t, c, e: TableStitchOperator(task_id="s", harvest_results=[], output_path=str(t / "out.csv")),
        "output_path '{tmp}/out.csv' must end in .gpkg (GeoPackage) or .parquet (GeoParquet).",
    ),
]


#: what a case needs in place first (not counted as the case's remote changes)
SETUP: dict[str, Callable[[str], None]] = {"ambiguous Drive folder": _twin_folders}


@pytest.mark.parametrize(("case", "provoke", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_its_exact_message_before_anything_remote_changes(
    case, provoke, message, gee_conn, emulator, tmp_path
):
    if case in SETUP:
        SETUP[case](gee_conn)
    before = emulator.stats()["requests"]
    with pytest.raises(Exception) as err:  # noqa: PT011 - the exact message is checked below
        provoke(tmp_path, gee_conn, emulator)
    text = str(err.value)
    if message.startswith("re:"):
        assert re.match(message[3:], text), text
    else:
        assert text == message.replace("{tmp}", str(tmp_path)), text
    after = emulator.stats()["requests"]
    touched = {r: n - before.get(r, 0) for r, n in after.items() if r in CHANGING_ROUTES and n != before.get(r, 0)}
    assert not touched, f"{case}: {touched}"


def test_the_table_has_at_least_twenty_cases():
    assert len(CASES) >= 20 and len({c[0] for c in CASES}) == len(CASES)
    guarantees = (Path(__file__).parents[2] / "docs" / "guarantees.md").read_text()
    missing = [c[0] for c in CASES if f"| {c[0]} |" not in guarantees]
    assert not missing, f"docs/guarantees.md's table lacks: {missing}"


def test_every_test_the_guarantees_name_exists():
    root = Path(__file__).parents[2]
    section = (root / "docs" / "guarantees.md").read_text()
    named = set(re.findall(r"\b(test_\w+)\b(?!\.py)", section))
    defined = set(re.findall(r"^def (test_\w+)", "\n".join(p.read_text() for p in root.glob("tests/**/*.py")), re.M))
    assert named and not named - defined, sorted(named - defined)
