"""Files someone else planted where an export's files land: the stitch refuses what is not the
format its name says (GDAL and OGR pick drivers by content), and makes no request for it.

Threat (docs/guarantees.md, "Who can do what"): a person who may write into the export's Drive
folder or bucket, but not run tasks, writes a file with an export's name holding a GDAL or OGR VRT
that points at a URL (a metadata server's token, say). Here a local HTTP server stands for that URL
and counts what reaches it.
"""

from __future__ import annotations

import json
import zipfile

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from airflow_provider_gee.exceptions import GeeConfigurationError
from airflow_provider_gee.operators.stitch import MosaicOperator, TableStitchOperator

pytestmark = pytest.mark.integration


def raster_vrt(url: str) -> str:
    return f"""<VRTDataset rasterXSize="16" rasterYSize="16">
  <SRS>EPSG:4326</SRS>
  <GeoTransform>13.0, 0.01, 0.0, 52.5, 0.0, -0.01</GeoTransform>
  <VRTRasterBand dataType="Byte" band="1">
    <SimpleSource>
      <SourceFilename relativeToVRT="0">/vsicurl/{url}/computeMetadata/v1/token</SourceFilename>
      <SourceBand>1</SourceBand>
    </SimpleSource>
  </VRTRasterBand>
</VRTDataset>
"""


def table_vrt(url: str) -> str:
    return f"""<OGRVRTDataSource>
  <OGRVRTLayer name="points">
    <SrcDataSource>/vsicurl/{url}/computeMetadata/v1/token.csv</SrcDataSource>
    <SrcLayer>token</SrcLayer>
  </OGRVRTLayer>
</OGRVRTDataSource>
"""


def good_tile(path, west: float = 13.0) -> None:
    profile = {"driver": "GTiff", "width": 16, "height": 16, "count": 1, "dtype": "uint8", "crs": "EPSG:4326",
               "transform": from_origin(west, 52.5, 0.01, 0.01)}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.ones((1, 16, 16), dtype="uint8"))


def test_a_vrt_named_like_a_tiff_tile_is_refused_unread(tmp_path, token_server):
    url, hits = token_server
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    good_tile(tiles / "r0001c0001_3f2a9c1e.tif")
    planted = tiles / "r0001c0002_3f2a9c1e.tif"
    planted.write_text(raster_vrt(url))
    refused = r"r0001c0002_3f2a9c1e\.tif is not a GeoTIFF: it holds a GDAL/OGR VRT"
    with pytest.raises(GeeConfigurationError, match=refused):
        MosaicOperator(
            task_id="m", harvest_results=[str(tiles / "r0001c0001_3f2a9c1e.tif"), str(planted)],
            destination=str(tmp_path / "out"), cog=True,
        ).execute({})  # fmt: skip
    assert hits == []
    assert not (tmp_path / "out" / "mosaic.vrt").exists()


def test_the_mosaic_of_real_geotiffs_still_works(tmp_path, token_server):
    """The same operator on two real GeoTIFF tiles: the check refuses nothing it should read."""
    _, hits = token_server
    good_tile(tmp_path / "a.tif")
    good_tile(tmp_path / "b.tif", west=13.16)
    result = MosaicOperator(
        task_id="m", harvest_results=[str(tmp_path / "a.tif"), str(tmp_path / "b.tif")],
        destination=str(tmp_path / "out"), cog=True,
    ).execute({})  # fmt: skip
    assert (result["width"], result["height"], result["files"]) == (32, 16, 2)
    assert hits == []


def geojson_with_vrt_inside(url: str) -> str:
    """Valid JSON whose first kilobyte holds an OGR VRT (OGR's VRT driver looks for it anywhere there)."""
    return json.dumps({"name": table_vrt(url).replace('"', "")})


def geojson_with_linked_crs(url: str) -> str:
    """A real FeatureCollection whose crs is a link: OGR's GeoJSON reader fetches it."""
    return json.dumps({
        "type": "FeatureCollection", "crs": {"type": "link", "properties": {"href": f"{url}/crs", "type": "proj4"}},
        "features": [
            {"type": "Feature", "properties": {"k": 2}, "geometry": {"type": "Point", "coordinates": [13.4, 52.5]}}
        ],
    })  # fmt: skip


PLANTED = {
    # name: (file name, how it is made, what the error says)
    "vrt as geojson": ("b.geojson", lambda url: table_vrt(url), r"b\.geojson: Expecting value"),
    "vrt inside valid json": ("b.json", geojson_with_vrt_inside, r"b\.json is not GeoJSON"),
    "linked crs": ("b.geojson", geojson_with_linked_crs, r"b\.geojson gives its crs as .*only a named crs is read"),
    "vrt alone in a zip": ("b.zip", {"points.vrt": table_vrt}, r"b\.zip holds 0 shapefiles"),
    "vrt as a zipped .dbf": ("b.zip", {"points.dbf": table_vrt}, r"b\.zip holds 0 shapefiles"),
    "vrt as the zipped .shp": (
        "b.zip", {"points.shp": table_vrt}, r"b\.zip!points\.shp is not a shapefile: it holds a GDAL/OGR VRT"
    ),
    "vrt under its own name": ("b.vrt", lambda url: table_vrt(url), r"b\.vrt has a suffix no stitch reads"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(PLANTED))
def test_a_table_someone_planted_is_refused_and_nothing_is_fetched(tmp_path, token_server, case):
    url, hits = token_server
    good = tmp_path / "a.geojson"
    gpd.GeoDataFrame({"k": [1]}, geometry=gpd.points_from_xy([13.3], [52.5]), crs="EPSG:4326").to_file(
        good, driver="GeoJSON"
    )
    name, make, expected = PLANTED[case]
    planted = tmp_path / name
    if isinstance(make, dict):
        with zipfile.ZipFile(planted, "w") as archive:  # a zip of one file is opened as that file by /vsizip/
            for member, content in make.items():
                archive.writestr(member, content(url))
    else:
        planted.write_text(make(url))
    with pytest.raises(GeeConfigurationError, match=expected):
        TableStitchOperator(
            task_id="t", harvest_results=[str(good), str(planted)], output_path=str(tmp_path / "out" / "t.gpkg")
        ).execute({})
    assert hits == []
    assert not (tmp_path / "out" / "t.gpkg").exists()


def test_real_tables_of_every_format_still_stitch(tmp_path, token_server):
    """GeoJSON (named crs too), a zipped shapefile (with macOS's resource fork beside it), a
    GeoPackage and EE's CSV: the checks refuse none of them."""
    _, hits = token_server
    frame = gpd.GeoDataFrame({"k": [1, 2]}, geometry=gpd.points_from_xy([13.3, 13.4], [52.5, 52.6]), crs="EPSG:4326")
    frame.to_file(tmp_path / "a.geojson", driver="GeoJSON")
    named = json.loads((tmp_path / "a.geojson").read_text())
    named["crs"] = {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}}
    (tmp_path / "b.json").write_text(json.dumps(named))
    shp = tmp_path / "shp"
    shp.mkdir()
    frame.to_file(shp / "c.shp")
    with zipfile.ZipFile(tmp_path / "c.zip", "w") as archive:
        for part in shp.iterdir():
            archive.write(part, part.name)
        archive.writestr("__MACOSX/._c.shp", b"\x00\x05\x16\x07")
    frame.to_file(tmp_path / "d.gpkg", driver="GPKG")
    (tmp_path / "e.csv").write_text('k,.geo\n5,"{""type"":""Point"",""coordinates"":[13.5,52.5]}"\n')
    inputs = [str(tmp_path / n) for n in ("a.geojson", "b.json", "c.zip", "d.gpkg", "e.csv")]
    result = TableStitchOperator(task_id="t", harvest_results=inputs, output_path=str(tmp_path / "t.gpkg")).execute({})
    assert result["rows_written"] == 9 and result["tables"] == 5
    assert hits == []
