"""Put the tiles back together: one raster mosaic (GDAL VRT, optionally a Cloud Optimized GeoTIFF)
and one table (GeoPackage or GeoParquet).

Rasterio/GDAL and geopandas/pyogrio do the heavy lifting; this module decides what goes where:
which harvested files belong to the product, whether their grids agree, in which order overlapping
tiles paint, and in which windows/chunks the product is written so memory stays bounded by the
window or chunk size, never by the product's size.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_gee.exceptions import GeeConfigurationError
from airflow_provider_gee.utils.storage import TEMP_PREFIX, is_remote, staging_dir

if TYPE_CHECKING:
    import numpy as np

# numpy and rasterio are imported in the functions that use them: the operator module imports this
# one when a DAG file is parsed, which every task process of every tile does again.

log = logging.getLogger(__name__)

RASTER_SUFFIXES = (".tif", ".tiff")
TABLE_SUFFIXES = (".csv", ".geojson", ".json", ".shp", ".zip", ".gpkg")
OVERLAP_RULES = ("first", "last", "mean")
#: relative tolerance when comparing pixel sizes and grid alignment of tiles
_GRID_TOLERANCE = 1e-6


# ============================================================ inputs


@dataclass(frozen=True)
class TileFile:
    """One harvested file and the tile it came from."""

    path: str
    tile_id: str | None


#: object stores a tile may be read from (through Airflow's ObjectStoragePath and the worker's
#: connections); http(s) and GDAL's own virtual file systems are not among them
OBJECT_STORE_SCHEMES = ("gs", "gcs", "s3", "s3a", "abfs", "abfss", "az", "adl", "file")


def _bare(url: str) -> str:
    """An object-store URL without the connection id (``gs://conn@bucket/x`` -> ``gs://bucket/x``)."""
    scheme, _, rest = url.partition("://")
    netloc, slash, tail = rest.partition("/")
    return f"{scheme}://{netloc.rsplit('@', 1)[-1]}{slash}{tail}"


def checked_input(path: str, root: str | None = None) -> str:
    """``path`` if it is a file a stitch may read: a regular local file (under ``root``, the
    harvest destination its manifest names, when given) or an object-store URL. GDAL virtual
    paths (``/vsicurl?url=...``, ``/vsigs/...``, ``/vsis3/...``) would make the worker fetch any
    URL (cloud metadata endpoints included) or read buckets with GDAL's own credentials, and
    http(s) URLs any server: both are refused, naming the input."""
    text = str(path)
    scheme = text.split("://", 1)[0].lower() if "://" in text else None
    if text.lower().removeprefix("file://").startswith("/vsi"):
        raise GeeConfigurationError(
            f"Stitch input {text[:200]!r} is a GDAL virtual path: give harvested files (the harvest task's output) "
            "or object-store URLs such as gs://bucket/tile.tif."
        )
    if scheme is not None and scheme not in OBJECT_STORE_SCHEMES:
        raise GeeConfigurationError(
            f"Stitch input {text[:200]!r} is a {scheme}:// URL: only harvested files and object-store URLs "
            f"({', '.join(s + '://' for s in OBJECT_STORE_SCHEMES)}) are read."
        )
    if scheme is not None and scheme != "file":
        if root is not None and is_remote(root) and not _bare(text).startswith(_bare(str(root)).rstrip("/") + "/"):
            raise GeeConfigurationError(f"Stitch input {text[:200]!r} is not inside its harvest destination {root!r}.")
        return text
    local = Path(text.removeprefix("file://"))
    if root is not None and not is_remote(root):
        base = Path(str(root).removeprefix("file://")).resolve()
        if not local.resolve().is_relative_to(base):
            raise GeeConfigurationError(f"Stitch input {text[:200]!r} is not inside its harvest destination {root!r}.")
    if not local.is_file() or local.is_symlink():
        raise GeeConfigurationError(f"Stitch input {text[:200]!r} is not a regular file on this worker.")
    return text


# GDAL and OGR choose a driver by a file's content, not its name: a ``.tif`` (or a table in a zip)
# holding VRT XML is opened as a VRT, which reads any file or URL it names (a metadata server's
# token URL included), and OGR's GeoJSON reader fetches a ``crs`` given as a link. Anyone who can
# write into the export's folder or bucket can plant such a file, so each harvested file must
# start as its format does before GDAL or OGR sees it, is opened by its format's driver only, and
# GeoJSON is read by Python's json, never by OGR.
_CONTENT_STARTS = {
    "GeoTIFF": (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"),  # classic TIFF and BigTIFF
    "GeoPackage": (b"SQLite format 3\x00",),
    "zipped shapefile": (b"PK\x03\x04",),
    "shapefile": (b"\x00\x00\x27\x0a",),  # the main file's code, big-endian 9994
}
_EXPECTED = {".tif": "GeoTIFF", ".tiff": "GeoTIFF", ".gpkg": "GeoPackage", ".zip": "zipped shapefile",
             ".shp": "shapefile"}  # fmt: skip
_VRT_MARKERS = (b"<VRTDataset", b"<OGRVRTDataSource")


def _refuse(path: str, expected: str, head: bytes) -> GeeConfigurationError:
    seen = "a GDAL/OGR VRT" if any(m in head for m in _VRT_MARKERS) else "something else"
    return GeeConfigurationError(
        f"Harvested file {path} is not a {expected}: it holds {seen} ({head[:40]!r}). It was refused unread, as "
        "GDAL would open it by its content; someone may have written into the export's folder or bucket. "
        "Remove the file and run the export and harvest again."
    )


def check_content(path: str) -> str:
    """Refuse a local harvested file whose suffix is not a raster's or table's, or whose first bytes
    are not those of its format: ``.tif``/``.tiff`` TIFF, ``.gpkg`` GeoPackage, ``.shp``
    shapefile, ``.zip`` a zip holding exactly one shapefile (``.shp``, checked the same way);
    ``.geojson``/``.json`` (read by :func:`read_geojson`) and ``.csv`` (pandas) never reach OGR.
    Return what GDAL/OGR is to open: the path, or ``/vsizip/<zip>/<its .shp>``."""
    suffix = Path(path).suffix.lower()
    if suffix not in RASTER_SUFFIXES + TABLE_SUFFIXES:
        raise GeeConfigurationError(
            f"Harvested file {path} has a suffix no stitch reads ({', '.join(RASTER_SUFFIXES + TABLE_SUFFIXES)}); "
            "it was refused unread."
        )
    with open(path, "rb") as fh:
        head = fh.read(1024)
    if suffix in (".csv", ".geojson", ".json"):
        return path
    expected = _EXPECTED[suffix]
    if not head.startswith(_CONTENT_STARTS[expected]):
        raise _refuse(path, expected, head)
    if suffix != ".zip":
        if any(m in head for m in _VRT_MARKERS):
            raise _refuse(path, expected, head)
        return path
    with zipfile.ZipFile(path) as archive:
        shapefiles = [
            m for m in archive.infolist()
            if m.filename.lower().endswith(".shp") and not m.filename.startswith("__MACOSX/")
        ]  # fmt: skip
        if len(shapefiles) != 1:
            raise GeeConfigurationError(
                f"Harvested file {path} holds {len(shapefiles)} shapefiles (.shp): a zipped table holds exactly one, "
                "as EE's SHP export writes it; it was refused unread."
            )
        with archive.open(shapefiles[0]) as part:
            inner = part.read(1024)
    if not inner.startswith(_CONTENT_STARTS["shapefile"]) or any(m in inner for m in _VRT_MARKERS):
        raise _refuse(f"{path}!{shapefiles[0].filename}", "shapefile", inner)
    # the shapefile itself, not the archive: GDAL opens a one-file zip as that file, whatever it is
    return f"/vsizip/{path}/{shapefiles[0].filename}"


def read_geojson(path: str) -> Any:
    """A GeoJSON file (a FeatureCollection, a Feature or a list of features) as a GeoDataFrame,
    read with Python's json: OGR's reader would fetch a ``crs`` given as a link or URL. Only a
    named ``crs`` (or none: EPSG:4326) is accepted."""
    import geopandas as gpd

    with open(path, "rb") as fh:
        data = json.load(fh)
    if isinstance(data, list):
        features = data
    elif isinstance(data, dict) and data.get("type") == "FeatureCollection":
        features = data.get("features") or []
    elif isinstance(data, dict) and data.get("type") == "Feature":
        features = [data]
    else:
        raise GeeConfigurationError(f"Harvested file {path} is not GeoJSON (no FeatureCollection or Feature).")
    crs: Any = "EPSG:4326"
    spec = data.get("crs") if isinstance(data, dict) else None
    if spec is not None:
        name = (spec.get("properties") or {}).get("name") if isinstance(spec, dict) else None
        if not (isinstance(spec, dict) and spec.get("type") == "name" and isinstance(name, str)):
            raise GeeConfigurationError(
                f"Harvested file {path} gives its crs as {str(spec)[:200]!r}: only a named crs is read (a linked one "
                "would be fetched from wherever it points); it was refused."
            )
        crs = name
    return gpd.GeoDataFrame.from_features(features, crs=crs)


def manifest_files(manifests: Any, suffixes: Sequence[str]) -> list[TileFile]:
    """The files with one of ``suffixes`` listed by harvest results, in the given order, each
    checked by :func:`checked_input` before anything reads it.

    :param manifests: one ``GeeHarvestOperator`` result, or a list of them (a mapped harvest's
        results; ``None`` entries, from tiles that produced nothing, are skipped), or a list of paths.
    """
    if isinstance(manifests, dict | str | os.PathLike):
        manifests = [manifests]
    files: list[TileFile] = []
    for item in manifests or []:
        if item is None:
            continue
        if isinstance(item, str | os.PathLike):
            files.append(TileFile(checked_input(str(item)), Path(str(item)).stem))
            continue
        if not isinstance(item, dict) or "files" not in item:
            raise GeeConfigurationError(
                f"Expected harvest results (dicts with 'files') or file paths, got {type(item).__name__}: "
                f"{str(item)[:200]!r}. Pass the mapped harvest task's output (e.g. harvest.output)."
            )
        for entry in item["files"]:
            if str(entry["path"]).lower().endswith(tuple(suffixes)):
                path = checked_input(str(entry["path"]), item.get("destination"))
                files.append(TileFile(path, item.get("tile_id")))
    return files


# ============================================================ raster


@dataclass(frozen=True)
class RasterTile:
    path: str
    tile_id: str | None
    crs: Any  # rasterio CRS
    transform: Any  # affine.Affine
    width: int
    height: int
    count: int
    dtype: str
    nodata: float | None
    block: tuple[int, int]
    descriptions: tuple[str | None, ...]

    @property
    def res(self) -> tuple[float, float]:
        return (self.transform.a, -self.transform.e)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        from rasterio.transform import array_bounds

        west, south, east, north = array_bounds(self.height, self.width, self.transform)
        return (west, south, east, north)


def read_raster_tiles(files: Iterable[TileFile], *, own_vrt: bool = False) -> list[RasterTile]:
    """Open each file once for its metadata (no pixels are read).

    :param own_vrt: the files are VRTs this module wrote (:func:`warp_to_grid`); otherwise each is
        a harvested GeoTIFF, checked by :func:`check_content` and opened with GDAL's GeoTIFF driver
        only.
    """
    import rasterio

    tiles = []
    for f in files:
        if not own_vrt:
            check_content(f.path)
        try:
            with rasterio.open(f.path, driver="VRT" if own_vrt else "GTiff") as src:
                if not src.transform.is_rectilinear or src.transform.a <= 0 or src.transform.e >= 0:
                    raise GeeConfigurationError(
                        f"{f.path} is rotated or flipped; only north-up rasters can be mosaicked."
                    )
                tiles.append(
                    RasterTile(
                        f.path, f.tile_id, src.crs, src.transform, src.width, src.height, src.count,
                        src.dtypes[0], src.nodata, src.block_shapes[0], tuple(src.descriptions),
                    )
                )  # fmt: skip
        except rasterio.errors.RasterioIOError as exc:
            raise GeeConfigurationError(f"Cannot open raster tile {f.path}: {exc}") from exc
    if not tiles:
        raise GeeConfigurationError("No GeoTIFF among the harvested files: nothing to mosaic.")
    return tiles


def check_same_grid(tiles: Sequence[RasterTile]) -> None:
    """Raise, naming the tiles, unless all share CRS, pixel size, pixel lattice, bands and type."""
    import numpy as np

    first = tiles[0]
    problems: list[str] = []
    for t in tiles[1:]:
        if t.crs != first.crs:
            problems.append(f"{t.path}: CRS {t.crs.to_string()} (first tile {first.path}: {first.crs.to_string()})")
        elif not np.allclose(t.res, first.res, rtol=_GRID_TOLERANCE, atol=0):
            problems.append(f"{t.path}: pixel size {t.res} (first tile {first.path}: {first.res})")
        elif not _on_lattice(t, first):
            problems.append(f"{t.path}: pixels not aligned with {first.path}'s (offset by a fraction of a pixel)")
        elif (t.count, t.dtype) != (first.count, first.dtype):
            problems.append(f"{t.path}: {t.count} bands of {t.dtype} (first tile: {first.count} of {first.dtype})")
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise GeeConfigurationError(
            f"{len(problems)} of {len(tiles)} tiles do not share the first tile's grid: {shown}. Export every tile "
            "with the same crs and scale (or crs_transform), or pass target_crs and target_resolution to resample "
            "all tiles to one grid."
        )


def _on_lattice(t: RasterTile, ref: RasterTile) -> bool:
    dx = (t.transform.c - ref.transform.c) / ref.res[0]
    dy = (ref.transform.f - t.transform.f) / ref.res[1]
    return abs(dx - round(dx)) < 1e-3 and abs(dy - round(dy)) < 1e-3


def warp_to_grid(
    tiles: Sequence[RasterTile], crs: str, resolution: float, workdir: Path, resampling: str = "nearest"
) -> list[RasterTile]:
    """Describe each tile resampled to ``crs`` at ``resolution`` on the lattice anchored at (0, 0),
    as a warped VRT file per tile (GDAL warps on read; nothing is materialized)."""
    import rasterio
    import rasterio.shutil
    from rasterio.enums import Resampling
    from rasterio.transform import from_origin
    from rasterio.vrt import WarpedVRT
    from rasterio.warp import transform_bounds

    try:
        method = Resampling[resampling]
    except KeyError:
        names = ", ".join(r.name for r in Resampling if r.value < 14)
        raise GeeConfigurationError(f"Unknown resampling {resampling!r}; use one of: {names}.") from None
    workdir.mkdir(parents=True, exist_ok=True)
    info = workdir.lstat()  # the warped VRTs are trusted as our own: so must their directory be
    if not workdir.is_dir() or workdir.is_symlink() or info.st_uid != os.getuid():
        raise GeeConfigurationError(f"{workdir} is not a directory of this user's: no warped tile is written there.")
    out = []
    for i, t in enumerate(tiles):
        left, bottom, right, top = transform_bounds(t.crs, crs, *t.bounds, densify_pts=21)
        x0, y1 = math.floor(left / resolution) * resolution, math.ceil(top / resolution) * resolution
        width = max(1, math.ceil(round((right - x0) / resolution, 6)))
        height = max(1, math.ceil(round((y1 - bottom) / resolution, 6)))
        path = workdir / f"warped-{i:06d}.vrt"
        with rasterio.open(t.path, driver="GTiff") as src, WarpedVRT(
            src, crs=crs, transform=from_origin(x0, y1, resolution, resolution), width=width, height=height,
            resampling=method, nodata=t.nodata if t.nodata is not None else 0,
        ) as vrt:  # fmt: skip
            staged = workdir / f"{TEMP_PREFIX}{path.name}"
            rasterio.shutil.copy(vrt, staged, driver="VRT")
            os.replace(staged, path)  # a symlink planted at the name is replaced, not written through
        out.append(read_raster_tiles([TileFile(str(path), t.tile_id)], own_vrt=True)[0])
    return out


@dataclass(frozen=True)
class MosaicGrid:
    crs: Any
    transform: Any
    width: int
    height: int
    count: int
    dtype: str
    nodata: float | None

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        from rasterio.transform import array_bounds

        west, south, east, north = array_bounds(self.height, self.width, self.transform)
        return (west, south, east, north)


#: the largest mosaic made unless asked (10^10 pixels: 100,000 x 100,000)
DEFAULT_MAX_MOSAIC_PIXELS = 10_000_000_000


def mosaic_grid(tiles: Sequence[RasterTile], max_pixels: int = DEFAULT_MAX_MOSAIC_PIXELS) -> MosaicGrid:
    """The grid of the union of the tiles (they share one lattice; see :func:`check_same_grid`),
    refused, naming its size, when it has more than ``max_pixels`` pixels (tiles far apart)."""
    from rasterio.transform import from_origin

    rx, ry = tiles[0].res
    left = min(t.bounds[0] for t in tiles)
    bottom = min(t.bounds[1] for t in tiles)
    right = max(t.bounds[2] for t in tiles)
    top = max(t.bounds[3] for t in tiles)
    width, height = round((right - left) / rx), round((top - bottom) / ry)
    if width * height > max_pixels:
        raise GeeConfigurationError(
            f"The mosaic of {len(tiles)} files would be {width:,} x {height:,} = {width * height:,} pixels "
            f"(bounds {left:g}, {bottom:g}, {right:g}, {top:g}), more than max_pixels={max_pixels:,}: its tiles lie "
            "far apart. Mosaic the tiles of one region together, or raise max_pixels."
        )
    first = tiles[0]
    return MosaicGrid(
        first.crs, from_origin(left, top, rx, ry), width, height, first.count, first.dtype, first.nodata
    )  # fmt: skip


def _offset(t: RasterTile, grid: MosaicGrid) -> tuple[int, int]:
    return (round((t.transform.c - grid.transform.c) / grid.transform.a),
            round((grid.transform.f - t.transform.f) / -grid.transform.e))  # fmt: skip


def write_vrt(
    tiles: Sequence[RasterTile], path: Path, overlap: str = "first", max_pixels: int = DEFAULT_MAX_MOSAIC_PIXELS
) -> MosaicGrid:
    """A GDAL VRT mosaic over the tiles (sources referenced, never copied).

    GDAL paints a VRT's sources in document order, so the later source wins where both have data:
    ``last`` lists the tiles in their given order, ``first`` in reverse. Sources are ComplexSources
    with the tile's nodata so a tile's empty pixels never hide another tile's data. (rasterio has no
    BuildVRT and the GDAL Python bindings are not a dependency; the format is documented at
    https://gdal.org/drivers/raster/vrt.html.)
    """
    import numpy as np

    if overlap not in ("first", "last"):
        raise GeeConfigurationError(f"A VRT can resolve overlaps with 'first' or 'last', not {overlap!r}.")
    grid = mosaic_grid(tiles, max_pixels)
    root = ET.Element("VRTDataset", rasterXSize=str(grid.width), rasterYSize=str(grid.height))
    ET.SubElement(root, "SRS").text = grid.crs.to_wkt()
    ET.SubElement(root, "GeoTransform").text = ", ".join(repr(v) for v in grid.transform.to_gdal())
    gdal_type = _GDAL_TYPES[np.dtype(grid.dtype).name]
    ordered = list(tiles) if overlap == "last" else list(reversed(tiles))
    for band in range(1, grid.count + 1):
        b = ET.SubElement(root, "VRTRasterBand", dataType=gdal_type, band=str(band))
        if grid.nodata is not None:
            ET.SubElement(b, "NoDataValue").text = _nodata_text(grid.nodata)
        if tiles[0].descriptions[band - 1]:
            ET.SubElement(b, "Description").text = tiles[0].descriptions[band - 1]
        for t in ordered:
            col, row = _offset(t, grid)
            src = ET.SubElement(b, "ComplexSource")
            ET.SubElement(src, "SourceFilename", relativeToVRT="0").text = str(Path(t.path).resolve())
            ET.SubElement(src, "SourceBand").text = str(band)
            ET.SubElement(
                src, "SourceProperties", RasterXSize=str(t.width), RasterYSize=str(t.height),
                DataType=gdal_type, BlockXSize=str(t.block[1]), BlockYSize=str(t.block[0]),
            )  # fmt: skip
            size = {"xSize": str(t.width), "ySize": str(t.height)}
            ET.SubElement(src, "SrcRect", {"xOff": "0", "yOff": "0", **size})
            ET.SubElement(src, "DstRect", {"xOff": str(col), "yOff": str(row), **size})
            if t.nodata is not None:
                ET.SubElement(src, "NODATA").text = _nodata_text(t.nodata)
    ET.indent(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    with staging_dir(path.parent) as stage:  # replaced whole, never written in place
        ET.ElementTree(root).write(stage / path.name, encoding="utf-8")
        os.replace(stage / path.name, path)
    return grid


_GDAL_TYPES = {
    "uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32", "int32": "Int32",
    "uint64": "UInt64", "int64": "Int64", "float32": "Float32", "float64": "Float64",
}  # fmt: skip


def _nodata_text(value: float) -> str:
    return "nan" if isinstance(value, float) and math.isnan(value) else repr(value)


def grid_windows(grid: MosaicGrid, size: int) -> Iterator[Any]:
    from rasterio.windows import Window

    for row in range(0, grid.height, size):
        for col in range(0, grid.width, size):
            yield Window(col, row, min(size, grid.width - col), min(size, grid.height - row))


def write_cog(
    tiles: Sequence[RasterTile],
    vrt_path: Path,
    grid: MosaicGrid,
    out_path: Path,
    *,
    overlap: str = "first",
    compress: str = "DEFLATE",
    window_size: int = 2048,
    cache_mb: int = 128,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Write the mosaic as one Cloud Optimized GeoTIFF, window by window.

    First a tiled GeoTIFF is written one ``window_size`` square at a time (from the VRT for
    ``first``/``last``; for ``mean``, rasterio's merge sums and counts the tiles overlapping the
    window), then GDAL's COG driver copies it with overviews and ``compress``. Memory is about
    ``window_size``² x bands x 8 bytes x 3 plus GDAL's block cache (``cache_mb``).
    """
    import rasterio
    import rasterio.shutil
    from rasterio.windows import bounds as window_bounds

    if overlap not in OVERLAP_RULES:
        raise GeeConfigurationError(f"overlap must be one of {', '.join(OVERLAP_RULES)}, not {overlap!r}.")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    windows = list(grid_windows(grid, window_size))
    profile = {
        "driver": "GTiff", "width": grid.width, "height": grid.height, "count": grid.count, "dtype": grid.dtype,
        "crs": grid.crs, "transform": grid.transform, "nodata": grid.nodata, "tiled": True, "blockxsize": 512,
        "blockysize": 512, "compress": "ZSTD", "bigtiff": "IF_SAFER",
    }  # fmt: skip
    with (
        tempfile.TemporaryDirectory(prefix=TEMP_PREFIX, dir=out_path.parent) as tmp,
        rasterio.Env(GDAL_CACHEMAX=cache_mb, GDAL_NUM_THREADS="ALL_CPUS"),
    ):
        staging = Path(tmp) / "staging.tif"
        with rasterio.open(staging, "w", **profile) as dst:
            dst.descriptions = tiles[0].descriptions
            src = rasterio.open(vrt_path) if overlap != "mean" else None
            try:
                for done, window in enumerate(windows, start=1):
                    if src is not None:
                        data = src.read(window=window)
                    else:
                        data = _mean_window(tiles, window_bounds(window, grid.transform), grid)
                    dst.write(data, window=window)
                    if progress:
                        progress(done, len(windows))
            finally:
                if src is not None:
                    src.close()
        staged = Path(tmp) / out_path.name
        rasterio.shutil.copy(
            staging, staged, driver="COG", COMPRESS=compress.upper(), BLOCKSIZE=512, BIGTIFF="IF_SAFER",
            OVERVIEWS="AUTO", NUM_THREADS="ALL_CPUS",
        )  # fmt: skip
        os.replace(staged, out_path)  # the previous COG stays whole until the new one is


def _mean_window(tiles: Sequence[RasterTile], bounds: tuple, grid: MosaicGrid) -> np.ndarray:
    """The mean of every tile's valid pixels in one window (tiles outside it are not opened)."""
    import numpy as np
    from rasterio.merge import merge

    left, bottom, right, top = bounds
    hits = [
        t.path
        for t in tiles
        if t.bounds[0] < right and t.bounds[2] > left and t.bounds[1] < top and t.bounds[3] > bottom
    ]
    res = (grid.transform.a, -grid.transform.e)
    nodata = grid.nodata if grid.nodata is not None else 0
    width, height = round((right - left) / res[0]), round((top - bottom) / res[1])
    if not hits:
        return np.full((grid.count, height, width), nodata, dtype=grid.dtype)
    total, _ = merge(hits, bounds=bounds, res=res, method="sum", dtype="float64", nodata=np.nan)
    count, _ = merge(hits, bounds=bounds, res=res, method="count", dtype="float64", nodata=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.where(count > 0, count, 1), nodata)
    if np.issubdtype(np.dtype(grid.dtype), np.integer):
        mean = np.rint(mean)
    return mean.astype(grid.dtype)


# ============================================================ tables


def read_table(path: str, tile_id: str | None, tile_column: str) -> Any:
    """One harvested table as a GeoDataFrame in EPSG:4326 with the tile id column added.

    EE's CSV exports carry the geometry as GeoJSON in a ``.geo`` column; GeoJSON is read by
    :func:`read_geojson`; shapefiles (also zipped) and GeoPackages by pyogrio, each with its driver.
    """
    import geopandas as gpd
    import pandas as pd
    import shapely

    suffix = Path(path).suffix.lower()
    source = check_content(path)
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path)
            geo = frame.pop(".geo") if ".geo" in frame.columns else None
            geometry = shapely.from_geojson(geo.fillna("null").tolist()) if geo is not None else None
            gdf = gpd.GeoDataFrame(frame, geometry=geometry, crs="EPSG:4326")
        elif suffix in (".geojson", ".json"):
            gdf = read_geojson(path)
        else:
            gdf = gpd.read_file(source, engine="pyogrio")
            if gdf.crs is None:
                gdf = gdf.set_crs("EPSG:4326")
    except Exception as exc:
        raise GeeConfigurationError(f"Cannot read table {path}: {exc}") from exc
    if gdf.crs is not None and not gdf.crs.equals("EPSG:4326"):
        gdf = gdf.to_crs("EPSG:4326")
    gdf[tile_column] = tile_id
    return gdf


def stitch_tables(
    files: Sequence[TileFile],
    out_path: Path,
    *,
    key: str | Sequence[str] | None = None,
    tile_column: str = "tile_id",
    layer: str = "stitched",
    progress: Callable[[int, int, int], None] | None = None,
) -> dict[str, Any]:
    """Concatenate the tables into one GeoPackage (``.gpkg``) or GeoParquet (``.parquet``) file, one
    input table in memory at a time.

    :param key: column(s) that identify a feature; a feature whose key was already written (e.g. a
        point on a chunk border exported twice) is dropped. Only the keys are kept in memory.
    :return: rows read, rows written, duplicates dropped, the columns.
    """

    suffix = out_path.suffix.lower()
    if suffix not in (".gpkg", ".parquet", ".geoparquet"):
        raise GeeConfigurationError(f"Output {out_path} must end in .gpkg (GeoPackage) or .parquet (GeoParquet).")
    if not files:
        raise GeeConfigurationError("No table (CSV, GeoJSON, SHP, GPKG) among the harvested files: nothing to stitch.")
    keys = [key] if isinstance(key, str) else list(key or [])
    schema = _union_schema(files, tile_column)
    missing = [k for k in keys if k not in schema]
    if missing:
        raise GeeConfigurationError(
            f"Key column(s) {missing} are in none of the tables; their columns are: {sorted(schema)}."
        )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # staged in a private directory next to the output, which is replaced only when whole: a
    # failed run leaves the previous output as it was
    with staging_dir(out_path.parent) as stage:
        gpkg = stage / f"{out_path.stem}.gpkg"
        summary = _write_tables(files, gpkg, schema, keys, tile_column, layer, progress)
        if suffix == ".gpkg":
            os.replace(gpkg, out_path)
        else:
            staged = stage / out_path.name
            _gpkg_to_geoparquet(gpkg, staged, layer)
            os.replace(staged, out_path)
    return summary


def _write_tables(
    files: Sequence[TileFile],
    gpkg: Path,
    schema: dict[str, str],
    keys: list[str],
    tile_column: str,
    layer: str,
    progress: Callable[[int, int, int], None] | None,
) -> dict[str, Any]:
    """Append the tables, one at a time, to one GeoPackage layer (see :func:`stitch_tables`)."""
    import pyogrio

    seen: set[tuple] = set()
    rows_in = rows_out = 0
    for done, f in enumerate(files, start=1):
        gdf = read_table(f.path, f.tile_id, tile_column)
        rows_in += len(gdf)
        for column, dtype in schema.items():
            if column not in gdf.columns:
                gdf[column] = None
            gdf[column] = gdf[column].astype(dtype)
        gdf = gdf[[*schema, "geometry"]]
        if keys:
            fresh = []  # also drops a key's repeats within this table
            for k in gdf[keys].itertuples(index=False, name=None):
                fresh.append(k not in seen)
                seen.add(k)
            gdf = gdf[fresh]
        if len(gdf):
            pyogrio.write_dataframe(gdf, gpkg, layer=layer, driver="GPKG", append=gpkg.exists(), promote_to_multi=False)
        rows_out += len(gdf)
        if progress:
            progress(done, len(files), rows_out)
    if not gpkg.exists():
        raise GeeConfigurationError(f"The {len(files)} tables hold no rows: nothing to write.")
    return {"rows_read": rows_in, "rows_written": rows_out, "duplicates_dropped": rows_in - rows_out,
            "columns": [*schema, "geometry"]}  # fmt: skip


def _union_schema(files: Sequence[TileFile], tile_column: str) -> dict[str, str]:
    """Columns of all tables (first seen order) and one dtype each: int64 unless a table has floats
    (float64), anything else as text; read from headers and metadata, not from the rows."""
    import pandas as pd
    import pyogrio

    kinds: dict[str, set[str]] = {}
    for f in files:
        suffix = Path(f.path).suffix.lower()
        source = check_content(f.path)
        try:
            if suffix == ".csv":
                sample = pd.read_csv(f.path, nrows=1000)
                fields = [(c, str(sample[c].dtype)) for c in sample.columns if c != ".geo"]
            elif suffix in (".geojson", ".json"):
                frame = read_geojson(f.path)
                fields = [(c, str(frame[c].dtype)) for c in frame.columns if c != frame.geometry.name]
            else:
                info = pyogrio.read_info(source)
                fields = list(zip(info["fields"], info["dtypes"], strict=True))
        except Exception as exc:
            raise GeeConfigurationError(f"Cannot read table {f.path}: {exc}") from exc
        for name, dtype in fields:
            kinds.setdefault(name, set()).add(dtype)
    schema: dict[str, str] = {}
    for name, found in kinds.items():
        if all(k.startswith(("int", "uint")) for k in found):
            schema[name] = "Int64"  # nullable: a table without the column gives missing values
        elif all(k.startswith(("int", "uint", "float")) for k in found):
            schema[name] = "float64"
        elif found == {"bool"}:
            schema[name] = "boolean"
        else:
            schema[name] = "object"
    schema[tile_column] = "object"
    return schema


def _gpkg_to_geoparquet(gpkg: Path, out_path: Path, layer: str, batch_rows: int = 65_536) -> None:
    """Stream the staged GeoPackage into GeoParquet row groups (GeoParquet 1.0.0 metadata)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import pyogrio

    info = pyogrio.read_info(gpkg, layer=layer)
    with pyogrio.open_arrow(gpkg, layer=layer, batch_size=batch_rows, use_pyarrow=True) as (meta, reader):
        geometry_column = meta["geometry_name"] or "geometry"
        crs = _projjson(meta["crs"])
        geo = {
            "version": "1.0.0",
            "primary_column": geometry_column,
            "columns": {
                geometry_column: {
                    "encoding": "WKB",
                    "geometry_types": [] if info["geometry_type"] in ("Unknown", None) else [info["geometry_type"]],
                    "crs": crs,
                    "bbox": [float(v) for v in info["total_bounds"]],
                }
            },
        }
        schema = pa.schema(reader.schema).with_metadata({b"geo": json.dumps(geo).encode()})
        tmp = out_path.with_name(f".{out_path.name}.partial")
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for batch in reader:
                writer.write_table(pa.Table.from_batches([batch], schema=schema))
        tmp.replace(out_path)


def _projjson(crs_text: str | None) -> dict[str, Any] | None:
    if not crs_text:
        return None
    from pyproj import CRS

    return CRS.from_user_input(crs_text).to_json_dict()
