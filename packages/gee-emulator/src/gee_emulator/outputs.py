"""Files the emulator writes for finished exports: GeoTIFFs for images, CSV/GeoJSON for tables.

Images are written window by window, so memory stays bounded whatever the export's size. Exports
larger than the file dimensions are split into ``prefix-YYYYYYYYYY-XXXXXXXXXX.tif`` parts named by
their pixel offsets, as EE names them.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from pyproj import CRS, Transformer
from rasterio.transform import from_origin
from rasterio.windows import Window
from shapely.ops import transform as shapely_transform

from gee_emulator.evaluator import METRES_PER_DEGREE, EvaluationError, FeatureCollection, Image

DEFAULT_MAX_PIXELS = 100_000_000
_ROWS_PER_WINDOW = 256
_NODATA = {"float32": float("nan"), "float64": float("nan")}


@dataclass(frozen=True)
class PixelGrid:
    crs: str
    x0: float  # west edge, in crs units
    y0: float  # north edge
    pixel: float  # pixel size, in crs units
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def pixel_grid(image: Image) -> PixelGrid:
    """The grid an image export covers: its region snapped outward to whole pixels."""
    if image.region is None:
        raise EvaluationError("Export region is required (give 'region').")
    if not image.scale or image.scale <= 0:
        raise EvaluationError("Export scale must be positive (give 'scale').")
    crs = CRS.from_user_input(image.crs)
    if crs.is_geographic:
        region, pixel = image.region, image.scale / METRES_PER_DEGREE
    else:
        to_crs = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
        region, pixel = shapely_transform(to_crs.transform, image.region), image.scale
    minx, miny, maxx, maxy = region.bounds
    # Snap to the projection's pixel lattice (origin 0,0) as EE does; round before floor/ceil so
    # that float noise in region bounds does not add a row.
    x0 = math.floor(round(minx / pixel, 6)) * pixel
    y1 = math.floor(round(miny / pixel, 6)) * pixel
    x1 = math.ceil(round(maxx / pixel, 6)) * pixel
    y0 = math.ceil(round(maxy / pixel, 6)) * pixel
    width = max(1, round((x1 - x0) / pixel))
    height = max(1, round((y0 - y1) / pixel))
    return PixelGrid(crs.to_string(), x0, y0, pixel, width, height)


def _band_dtype(image: Image) -> str:
    kinds = {b.dtype for b in image.bands}
    return "float64" if any("float" in k for k in kinds) else max(kinds, key=lambda k: np.dtype(k).itemsize)


def write_geotiffs(image: Image, grid: PixelGrid, directory: Path, prefix: str, shard: tuple[int, int]) -> list[Path]:
    """Write the image as one GeoTIFF, or as shards when it exceeds ``shard`` (width, height)."""
    dtype = _band_dtype(image)
    nodata = _NODATA.get(dtype, 0)
    to_lonlat = None
    if not CRS.from_user_input(grid.crs).is_geographic:
        to_lonlat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    sw, sh = shard
    split = grid.width > sw or grid.height > sh
    paths = []
    for row0 in range(0, grid.height, sh):
        for col0 in range(0, grid.width, sw):
            h, w = min(sh, grid.height - row0), min(sw, grid.width - col0)
            name = f"{prefix}-{row0:010d}-{col0:010d}.tif" if split else f"{prefix}.tif"
            path = directory / name
            transform = from_origin(grid.x0 + col0 * grid.pixel, grid.y0 - row0 * grid.pixel, grid.pixel, grid.pixel)
            profile = {
                "driver": "GTiff",
                "width": w,
                "height": h,
                "count": len(image.bands),
                "dtype": dtype,
                "crs": grid.crs,
                "transform": transform,
                "nodata": nodata,
                "tiled": w >= 256 and h >= 256,
                "compress": "deflate",
            }
            with rasterio.open(path, "w", **profile) as dst:
                for i, band in enumerate(image.bands, start=1):
                    dst.set_band_description(i, band.name)
                for r in range(0, h, _ROWS_PER_WINDOW):
                    rows = min(_ROWS_PER_WINDOW, h - r)
                    xs = grid.x0 + (col0 + np.arange(w) + 0.5) * grid.pixel
                    ys = grid.y0 - (row0 + r + np.arange(rows) + 0.5) * grid.pixel
                    x, y = np.meshgrid(xs, ys)
                    lon, lat = to_lonlat.transform(x, y) if to_lonlat else (x, y)
                    values = image.sample_masked(np.asarray(lon), np.asarray(lat))
                    for i, band in enumerate(image.bands, start=1):
                        # each band keeps its own mask, as in EE's GeoTIFFs (nodata where masked)
                        data = np.ma.filled(values[band.name].astype(dtype), nodata)
                        dst.write(data, i, window=Window(0, r, w, rows))
            paths.append(path)
    return paths


def _row(feature_props: dict, geometry: dict | None, index: int) -> dict:
    return {"system:index": str(index), **feature_props, ".geo": json.dumps(geometry) if geometry else ""}


def write_table(
    collection: FeatureCollection,
    directory: Path,
    prefix: str,
    file_format: str,
    selectors: list[str] | None = None,
) -> list[Path]:
    """Write a table export as EE does (CSV with ``system:index`` and ``.geo``, or GeoJSON)."""
    fmt = file_format.upper()
    feats = collection.features
    if fmt == "CSV":
        rows = [_row(f.properties, f.geometry.to_geojson() if f.geometry else None, i) for i, f in enumerate(feats)]
        columns = ["system:index"]
        for row in rows:
            columns += [k for k in row if k not in columns and k != ".geo"]
        columns.append(".geo")
        if selectors:
            columns = [c for c in columns if c in selectors]
        path = directory / f"{prefix}.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        return [path]
    if fmt == "GEO_JSON" or fmt == "GEOJSON":
        path = directory / f"{prefix}.geojson"
        data = collection.to_geojson()
        data.pop("columns", None)
        if selectors:
            for f in data["features"]:
                f["properties"] = {k: v for k, v in f["properties"].items() if k in selectors}
        path.write_text(json.dumps(data), encoding="utf-8")
        return [path]
    raise EvaluationError(f"Table file format {file_format!r} is not supported by the emulator (use CSV or GEO_JSON).")
