"""Split a region into grid tiles, or points into spatial chunks, as small JSON-ready dicts that
dynamic task mapping fans out over (``GeeExportOperator.partial(...).expand(tile=tiles)``).

Every tile dict has ``tile_id`` (stable across runs and input CRSs, sortable), ``geometry``
(GeoJSON, EPSG:4326) and ``bbox`` (``[minx, miny, maxx, maxy]``, EPSG:4326). Grid tiles also carry
``row``/``col``, ``cell`` (the cell's bounds in the grid's CRS, overlap included) and ``grid``
(``{"crs", "cell_size"}``), so that exports can snap pixels to the grid; point chunks carry
``cell`` (their quadtree square), ``point_count``, ``point_ids`` and what is needed to rebuild the
points (``source`` file, ``layer``, ``id_column``). Treat the dicts as read-only: tiles of one
grid share their ``grid`` dict.

The work is vectorized with shapely 2 and numpy: candidate cells are built and tested against the
region as arrays, never in a Python loop per cell.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import math
import os
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS, Transformer
from shapely.geometry.base import BaseGeometry

from airflow_provider_gee.exceptions import GeeConfigurationError
from airflow_provider_gee.utils.compact_tiles import expand_tile, rectangle

if TYPE_CHECKING:
    from airflow_provider_gee.hooks.earth_engine import EarthEngineHook

log = logging.getLogger(__name__)

WGS84 = "EPSG:4326"
#: Default CRS of grids in metres: global, equal-area (EASE-Grid 2.0), so ids do not depend on
#: which UTM zone a region happens to fall in.
DEFAULT_METRIC_CRS = "EPSG:6933"
DEFAULT_MAX_TILES = 100_000
#: Candidate cells over the region's bounding box beyond which the grid is refused outright.
MAX_CANDIDATE_CELLS = 50_000_000
_COORD_DIGITS = 7  # ~1 cm at the equator: plenty for tiles, keeps XCom small
_WKT_PREFIXES = (
    "POINT",
    "MULTIPOINT",
    "LINESTRING",
    "MULTILINESTRING",
    "POLYGON",
    "MULTIPOLYGON",
    "GEOMETRYCOLLECTION",
)

RegionLike = Any  # path | shapely geometry | GeoDataFrame | GeoSeries | bbox | WKT | GeoJSON | EE asset id


# ====================================================================== reading input


def _describe(region: RegionLike) -> str:
    """The region as an error names it: a file's whole path (so the message says which file, however
    deep the directory), inline data (WKT, GeoJSON, geometries) cut to 80 characters."""
    if isinstance(region, str | os.PathLike) and len(str(region)) < 4096 and os.path.isfile(region):
        return repr(str(region))
    text = repr(region)
    return text if len(text) <= 80 else text[:77] + "..."


def _read_vector_file(path: Path, layer: str | None, what: str) -> gpd.GeoDataFrame:
    import pyogrio

    if not path.exists():
        raise GeeConfigurationError(
            f"{what} file {str(path)!r} does not exist: give the path to a GeoPackage, shapefile or GeoJSON file."
        )
    if not os.access(path, os.R_OK):
        raise GeeConfigurationError(f"{what} file {str(path)!r} is not readable: check its permissions.")
    try:
        layers = pyogrio.list_layers(path)
    except Exception as exc:  # pyogrio raises DataSourceError and friends
        raise GeeConfigurationError(
            f"{what} file {str(path)!r} cannot be read as vector data ({exc}): use a GeoPackage, shapefile or GeoJSON."
        ) from exc
    names = [str(n) for n in layers[:, 0]]
    if layer is None and len(names) > 1:
        raise GeeConfigurationError(
            f"{what} file {str(path)!r} has {len(names)} layers ({', '.join(names)}): pass layer=... to choose one."
        )
    if layer is not None and layer not in names:
        raise GeeConfigurationError(
            f"{what} file {str(path)!r} has no layer {layer!r}; its layers are: {', '.join(names)}."
        )
    return gpd.read_file(path, layer=layer, engine="pyogrio")


def _frame_to_wgs84(gdf: gpd.GeoDataFrame | gpd.GeoSeries, what: str, assume_crs: str | None) -> gpd.GeoSeries:
    series = gdf.geometry if isinstance(gdf, gpd.GeoDataFrame) else gdf
    if series.crs is None:
        if assume_crs is None:
            raise GeeConfigurationError(
                f"{what} has no CRS: give the data a CRS (e.g. `ogr2ogr -a_srs EPSG:4326 ...`) or pass "
                "region_crs='EPSG:...' to state the CRS its coordinates are in."
            )
        series = series.set_crs(assume_crs)
    return series.to_crs(WGS84)


def _repair(geom: BaseGeometry, what: str) -> BaseGeometry:
    if geom.is_valid:
        return geom
    reason = shapely.is_valid_reason(geom)
    repaired = shapely.make_valid(geom)
    # make_valid may return a collection holding lines/points besides the areas; keep the areas
    if repaired.geom_type == "GeometryCollection":
        polys = [g for g in shapely.get_parts(repaired) if g.geom_type in ("Polygon", "MultiPolygon")]
        repaired = shapely.union_all(polys) if polys else repaired
    log.warning("%s had an invalid geometry (%s); repaired it with make_valid.", what, reason)
    return repaired


def read_region(
    region: RegionLike,
    *,
    layer: str | None = None,
    region_crs: str | None = None,
    hook: EarthEngineHook | None = None,
) -> BaseGeometry:
    """The region as one valid shapely geometry in EPSG:4326.

    :param region: a vector file path (GeoPackage, shapefile, GeoJSON; any CRS), a shapely
        geometry (EPSG:4326 unless ``region_crs``), a GeoDataFrame/GeoSeries, a bbox
        ``(minx, miny, maxx, maxy)``, a WKT or GeoJSON string/dict, or an EE table asset id
        (``projects/.../assets/...``; needs ``hook``).
    :param layer: layer of a multi-layer file (GeoPackage).
    :param region_crs: CRS of input that carries none (a bare geometry, bbox, WKT, a file without CRS).
    :param hook: an EarthEngineHook, to read an EE table asset.
    """
    what = f"Region {_describe(region)}"
    if isinstance(region, (gpd.GeoDataFrame, gpd.GeoSeries)):
        series = _frame_to_wgs84(region, what, region_crs)
    elif isinstance(region, BaseGeometry):
        series = gpd.GeoSeries([region], crs=region_crs or WGS84).to_crs(WGS84)
    elif isinstance(region, dict):
        series = _geojson_series(region, region_crs)
    elif isinstance(region, (list, tuple)) and len(region) == 4 and all(isinstance(v, (int, float)) for v in region):
        minx, miny, maxx, maxy = (float(v) for v in region)
        if not (minx < maxx and miny < maxy):
            raise GeeConfigurationError(f"{what}: a bbox must be (minx, miny, maxx, maxy) with min < max.")
        series = gpd.GeoSeries([shapely.box(minx, miny, maxx, maxy)], crs=region_crs or WGS84).to_crs(WGS84)
    elif isinstance(region, (str, os.PathLike)):
        text = str(region).strip()
        if text.startswith(("projects/", "users/")):
            if hook is None:
                raise GeeConfigurationError(f"{what} is an EE table asset: pass gcp_conn_id/hook to read it.")
            series = ee_table_to_geodataframe(text, hook).geometry
        elif text.upper().startswith(_WKT_PREFIXES):
            try:
                geom = shapely.from_wkt(text)
            except shapely.errors.GEOSException as exc:
                raise GeeConfigurationError(f"{what} is not valid WKT: {exc}.") from exc
            series = gpd.GeoSeries([geom], crs=region_crs or WGS84).to_crs(WGS84)
        elif text.startswith("{"):
            series = _geojson_series(json.loads(text), region_crs)
        else:
            series = _frame_to_wgs84(
                _read_vector_file(Path(text), layer, "Region"), f"Region file {text!r}", region_crs
            )
    else:
        raise GeeConfigurationError(
            f"{what} is not a region: give a file path, a shapely geometry, a GeoDataFrame, a bbox "
            "(minx, miny, maxx, maxy), WKT, GeoJSON or an EE table asset id."
        )
    series = series[~series.is_empty & series.notna()]
    if series.empty:
        raise GeeConfigurationError(f"{what} is empty: it holds no geometry to tile.")
    geom = shapely.union_all([_repair(g, what) for g in series])
    if geom.is_empty:
        raise GeeConfigurationError(f"{what} is empty after repair: check its geometry.")
    return geom


def _geojson_series(data: dict[str, Any], region_crs: str | None) -> gpd.GeoSeries:
    if data.get("type") == "FeatureCollection":
        return gpd.GeoDataFrame.from_features(data["features"], crs=region_crs or WGS84).geometry.to_crs(WGS84)
    if data.get("type") == "Feature":
        data = data["geometry"]
    return gpd.GeoSeries([shapely.geometry.shape(data)], crs=region_crs or WGS84).to_crs(WGS84)


# ====================================================================== grid


def round_coordinates(values: Any) -> Any:
    """Coordinates as tiles keep them: floats rounded to 7 decimals (about 1 cm at the equator)."""
    return np.round(np.asarray(values, dtype=float), _COORD_DIGITS)


def _digits(n: int) -> int:
    return max(4, len(str(max(0, n))))


def grid_tiles(
    region: RegionLike,
    cell_size: float,
    *,
    units: str = "degrees",
    crs: str | None = None,
    origin: tuple[float, float] | None = None,
    clip: bool = False,
    overlap: float = 0.0,
    max_tiles: int = DEFAULT_MAX_TILES,
    layer: str | None = None,
    region_crs: str | None = None,
    hook: EarthEngineHook | None = None,
) -> list[dict[str, Any]]:
    """Cover a region with a regular grid; one tile per cell that intersects it.

    :param region: see :func:`read_region`.
    :param cell_size: cell edge in ``units`` (> 0).
    :param units: ``"degrees"`` (grid in EPSG:4326) or ``"metres"`` (grid in ``crs``).
    :param crs: the grid's CRS for metres (default EPSG:6933, global equal-area); must be projected.
    :param origin: the grid's anchor (x, y) in the grid CRS. Default: lon -180, lat -90 in
        degrees; the south-west corner of the CRS's area of use in metres. Cells are counted from
        it, so the same cell keeps its id across runs and regions.
    :param clip: clip each tile's geometry (and bbox) to the region; ``cell`` stays the whole cell.
    :param overlap: grow each cell by this much (grid units) on every side, e.g. for seamless
        focal operations; ids and rows/cols stay those of the cell.
    :param max_tiles: refuse grids with more tiles than this.
    """
    if not isinstance(cell_size, (int, float)) or not math.isfinite(cell_size) or cell_size <= 0:
        raise GeeConfigurationError(f"cell_size must be a positive number, got {cell_size!r}.")
    if overlap < 0 or overlap >= cell_size:
        raise GeeConfigurationError(f"overlap must be >= 0 and smaller than cell_size ({cell_size}), got {overlap!r}.")
    if units in ("degrees", "degree", "deg"):
        grid_crs = CRS.from_user_input(crs or WGS84)
        if not grid_crs.is_geographic:
            raise GeeConfigurationError(f"units='degrees' needs a geographic CRS, got {grid_crs.to_string()}.")
        default_origin = (-180.0, -90.0)
    elif units in ("metres", "meters", "m"):
        grid_crs = CRS.from_user_input(crs or DEFAULT_METRIC_CRS)
        if not grid_crs.is_projected:
            raise GeeConfigurationError(
                f"units='metres' needs a projected CRS, got {grid_crs.to_string()}: pass crs='EPSG:...' "
                "(a UTM zone or an equal-area CRS) or use units='degrees'."
            )
        aou = grid_crs.area_of_use
        west, south = (aou.west, aou.south) if aou else (-180.0, -90.0)
        default_origin = Transformer.from_crs(WGS84, grid_crs, always_xy=True).transform(west, south)
        default_origin = (math.floor(default_origin[0]), math.floor(default_origin[1]))
    else:
        raise GeeConfigurationError(f"units must be 'degrees' or 'metres', got {units!r}.")
    ox, oy = origin if origin is not None else default_origin

    geom = read_region(region, layer=layer, region_crs=region_crs, hook=hook)
    geographic = grid_crs.is_geographic
    if geographic:
        to_grid = from_grid = None
        region_g = geom
    else:
        to_grid = Transformer.from_crs(WGS84, grid_crs, always_xy=True)
        from_grid = Transformer.from_crs(grid_crs, WGS84, always_xy=True)
        region_g = shapely.transform(geom, lambda xy: np.column_stack(to_grid.transform(xy[:, 0], xy[:, 1])))

    minx, miny, maxx, maxy = region_g.bounds
    # rounded before floor/ceil: a region edge on the lattice (13.2 = -180 + 3864 x 0.05) must not
    # add a row or column of cells that only float noise makes overlap it
    c0, c1 = math.floor(round((minx - ox) / cell_size, 9)), math.ceil(round((maxx - ox) / cell_size, 9))
    r0, r1 = math.floor(round((miny - oy) / cell_size, 9)), math.ceil(round((maxy - oy) / cell_size, 9))
    candidates = (c1 - c0) * (r1 - r0)
    if candidates > MAX_CANDIDATE_CELLS:
        raise GeeConfigurationError(
            f"A grid of cell_size={cell_size} {units} over the region needs {candidates:,} candidate cells "
            f"(limit {MAX_CANDIDATE_CELLS:,}): use a larger cell_size."
        )
    n_rows, n_cols = max(r1 - r0, 1), max(c1 - c0, 1)
    found = _cells_in_region(region_g, n_rows, n_cols, ox + c0 * cell_size, oy + r0 * cell_size, cell_size, max_tiles)
    if isinstance(found, int):  # stopped as soon as the count passed max_tiles
        raise GeeConfigurationError(
            f"The grid would have at least {found:,} tiles, more than max_tiles={max_tiles:,}: use a larger "
            "cell_size, a smaller region, or raise max_tiles."
        )
    rows, cols = found[0] + r0, found[1] + c0
    count = len(rows)
    if count == 0:
        raise GeeConfigurationError(
            f"Region {_describe(region)} intersects no grid cell: check its coordinates and CRS."
        )
    x0, y0 = ox + cols * cell_size, oy + rows * cell_size
    cell_bounds = np.column_stack([x0 - overlap, y0 - overlap, x0 + cell_size + overlap, y0 + cell_size + overlap])
    cells = shapely.box(*cell_bounds.T) if clip or not geographic else None
    geoms = shapely.intersection(cells, region_g) if clip else cells
    if from_grid is not None:  # a projected grid
        back = from_grid
        geoms = shapely.transform(
            shapely.segmentize(geoms, cell_size / 8),  # keep projected edges' curvature in lon/lat
            lambda xy: np.column_stack(back.transform(xy[:, 0], xy[:, 1])),
        )
    bboxes = round_coordinates(cell_bounds if geoms is None else shapely.bounds(geoms)).tolist()
    row_digits = _digits(math.ceil(abs(oy) * 2 / cell_size) if geographic else int(rows.max()))
    col_digits = _digits(math.ceil(abs(ox) * 2 / cell_size) if geographic else int(cols.max()))
    # one grid description shared by every tile (read-only): 1M tiles need 1M fewer dicts
    grid = {"crs": grid_crs.to_string(), "cell_size": cell_size}
    ids = [f"r{r:0{row_digits}d}c{c:0{col_digits}d}" for r, c in zip(rows.tolist(), cols.tolist(), strict=True)]
    with _no_gc():
        if geographic and not clip:
            # rectangles in lon/lat: rings reuse the bbox's floats, and the closing point its first
            tiles = [
                {
                    "tile_id": i,
                    "row": r,
                    "col": c,
                    "geometry": {"type": "Polygon", "coordinates": [[sw := [w, s], [e, s], [e, n], [w, n], sw]]},
                    "bbox": bb,
                    "cell": bb,
                    "grid": grid,
                }
                for i, r, c, bb in zip(ids, rows.tolist(), cols.tolist(), bboxes, strict=True)
                for w, s, e, n in (bb,)
            ]
        else:
            rounded = shapely.set_precision(geoms, 10.0**-_COORD_DIGITS)
            # a clipped tile that is still a rectangle in lon/lat (inside the region) is written as
            # the unclipped ones are, so that compact tiles can leave its geometry out
            # (projected grids' outlines are curved in lon/lat: nothing to test there)
            if geographic:
                plain = shapely.equals(geoms, shapely.box(*shapely.bounds(geoms).T)).tolist()
            else:
                plain = [False] * count
            tiles = [
                {
                    "tile_id": i,
                    "row": r,
                    "col": c,
                    "geometry": rectangle(bb) if p else json.loads(g),
                    "bbox": bb,
                    "cell": cb,
                    "grid": grid,
                }
                for i, r, c, g, p, bb, cb in zip(
                    ids,
                    rows.tolist(),
                    cols.tolist(),
                    shapely.to_geojson(rounded),
                    plain,
                    bboxes,
                    round_coordinates(cell_bounds).tolist(),
                    strict=True,
                )
            ]
    tiles.sort(key=lambda t: t["tile_id"])
    log.info("Grid of %s %s over the region: %d tiles (of %d candidate cells).", cell_size, units, count, candidates)
    return tiles


_BLOCK = 16


def _cells_in_region(
    region: BaseGeometry, n_rows: int, n_cols: int, x0: float, y0: float, size: float, max_count: int
) -> tuple[np.ndarray, np.ndarray] | int:
    """(rows, cols), relative to the grid's first cell, of the cells whose interior meets the
    region (touching its boundary is not enough), in row-major order; or, as soon as more than
    ``max_count`` are found, their count so far (nothing per candidate cell is allocated first).

    Cells are judged by blocks of ``_BLOCK`` x ``_BLOCK``: a block inside the region keeps all its
    cells (so the count is known before any cell is made) and a block apart from it drops them;
    only cells of blocks on the region's boundary are tested one by one, a batch of blocks at a time.
    """
    shapely.prepare(region)
    n_br, n_bc = -(-n_rows // _BLOCK), -(-n_cols // _BLOCK)
    br, bc = np.divmod(np.arange(n_br * n_bc), n_bc)
    bx, by = x0 + bc * size * _BLOCK, y0 + br * size * _BLOCK
    blocks = shapely.box(bx, by, bx + size * _BLOCK, by + size * _BLOCK)
    inside = shapely.contains_properly(region, blocks)
    edge = shapely.intersects(region, blocks) & ~inside
    # cells of a block that lie within the grid (the last row and column of blocks are partial)
    cells_in = np.minimum(_BLOCK, n_rows - br * _BLOCK) * np.minimum(_BLOCK, n_cols - bc * _BLOCK)
    count = int(cells_in[inside].sum())
    if count > max_count:
        return count
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    offsets = np.arange(_BLOCK * _BLOCK)
    off_r, off_c = offsets // _BLOCK, offsets % _BLOCK

    def block_cells(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r = (br[ids, None] * _BLOCK + off_r).ravel()
        c = (bc[ids, None] * _BLOCK + off_c).ravel()
        valid = (r < n_rows) & (c < n_cols)
        return r[valid], c[valid]

    parts.append(block_cells(np.flatnonzero(inside)))
    edge_ids = np.flatnonzero(edge)
    for start in range(0, edge_ids.size, 64):  # 64 blocks: at most 16,384 cells at a time
        r, c = block_cells(edge_ids[start : start + 64])
        cx, cy = x0 + c * size, y0 + r * size
        cells = shapely.box(cx, cy, cx + size, cy + size)
        hit = shapely.intersects(region, cells) & ~shapely.touches(region, cells)
        count += int(hit.sum())
        if count > max_count:
            return count
        parts.append((r[hit], c[hit]))
    rows = np.concatenate([p[0] for p in parts]) if parts else np.empty(0, int)
    cols = np.concatenate([p[1] for p in parts]) if parts else np.empty(0, int)
    order = np.lexsort((cols, rows))
    return rows[order], cols[order]


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many small containers: they hold no
    cycles, and collections triggered by the allocations alone would dominate the run time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# ====================================================================== points


def read_points(
    points: str | os.PathLike | gpd.GeoDataFrame, *, layer: str | None = None, region_crs: str | None = None
) -> gpd.GeoDataFrame:
    """Points as a GeoDataFrame in EPSG:4326 (from a file or a GeoDataFrame)."""
    if isinstance(points, gpd.GeoDataFrame):
        gdf = points
        what = "Points GeoDataFrame"
    elif isinstance(points, (str, os.PathLike)):
        gdf = _read_points_file(str(points), layer)
        what = f"Points file {str(points)!r}"
    else:
        raise GeeConfigurationError(f"points must be a file path or a GeoDataFrame, got {type(points).__name__}.")
    if gdf.empty:
        raise GeeConfigurationError(f"{what} holds no points.")
    geometry = _frame_to_wgs84(gdf, what, region_crs)
    types = set(geometry.geom_type.dropna())
    if not types <= {"Point"}:
        raise GeeConfigurationError(f"{what} must hold single points only, found {sorted(types)}.")
    return gdf.set_geometry(geometry)


@lru_cache(maxsize=8)
def _read_points_file_cached(path: str, layer: str | None, mtime: float) -> gpd.GeoDataFrame:
    return _read_vector_file(Path(path), layer, "Points")


def _read_points_file(path: str, layer: str | None) -> gpd.GeoDataFrame:
    mtime = Path(path).stat().st_mtime if Path(path).exists() else 0.0
    return _read_points_file_cached(path, layer, mtime).copy()


def chunk_points(
    points: str | os.PathLike | gpd.GeoDataFrame,
    max_points: int,
    *,
    id_column: str | None = None,
    max_extent: float | None = None,
    layer: str | None = None,
    region_crs: str | None = None,
) -> list[dict[str, Any]]:
    """Split points into chunks of limited extent holding at most ``max_points`` points each.

    A quadtree on a fixed world square (lon/lat -180..180) is split where a cell holds more than
    ``max_points`` points or is wider than ``max_extent`` degrees; leaves become chunks. Chunk ids
    are the quadtree paths (``q`` + digits 0-3), stable for the same points. Every point lands in
    exactly one chunk.

    :param points: a point file (GeoPackage, shapefile, GeoJSON) or a GeoDataFrame.
    :param max_points: the most points one chunk may hold (> 0).
    :param id_column: column with the points' ids (unique); default: the row number.
    :param max_extent: optional largest chunk width/height in degrees.
    """
    if not isinstance(max_points, int) or max_points <= 0:
        raise GeeConfigurationError(f"max_points must be a positive integer, got {max_points!r}.")
    if max_extent is not None and max_extent <= 0:
        raise GeeConfigurationError(f"max_extent must be positive (degrees), got {max_extent!r}.")
    gdf = read_points(points, layer=layer, region_crs=region_crs)
    if id_column is None:
        ids = np.arange(len(gdf))
    else:
        if id_column not in gdf.columns:
            raise GeeConfigurationError(
                f"id_column {id_column!r} is not a column of the points; columns: {', '.join(map(str, gdf.columns))}."
            )
        ids = gdf[id_column].to_numpy()
        if pd.Series(ids).duplicated().any():
            raise GeeConfigurationError(f"id_column {id_column!r} has duplicate values: point ids must be unique.")
    x = gdf.geometry.x.to_numpy()
    y = gdf.geometry.y.to_numpy()
    source = None if isinstance(points, gpd.GeoDataFrame) else str(Path(points).resolve())

    chunks: list[dict[str, Any]] = []
    # (path, minx, miny, size, indices); the root square covers the whole lon/lat plane
    stack: list[tuple[str, float, float, float, np.ndarray]] = [("q", -180.0, -180.0, 360.0, np.arange(len(x)))]
    max_depth = 40
    while stack:
        path, cx, cy, size, idx = stack.pop()
        too_many = len(idx) > max_points
        too_wide = max_extent is not None and size > max_extent
        if (too_many or too_wide) and len(path) <= max_depth:
            half = size / 2
            qx = x[idx] >= cx + half
            qy = y[idx] >= cy + half
            quadrant = qx.astype(int) + 2 * qy.astype(int)  # 0 SW, 1 SE, 2 NW, 3 NE
            for q in (3, 2, 1, 0):  # pushed in reverse so chunks come out in id order
                sub = idx[quadrant == q]
                if len(sub):
                    stack.append((path + str(q), cx + half * (q & 1), cy + half * (q >> 1), half, sub))
            continue
        # identical coordinates cannot be split spatially: cut by order instead
        for part, start in enumerate(range(0, len(idx), max_points)):
            piece = idx[start : start + max_points]
            suffix = f"-{part}" if len(idx) > max_points else ""
            cell = [cx, cy, cx + size, cy + size]
            chunks.append(
                {
                    "tile_id": path + suffix,
                    "geometry": rectangle(round_coordinates(cell).tolist()),
                    "bbox": round_coordinates(
                        [x[piece].min(), y[piece].min(), x[piece].max(), y[piece].max()]
                    ).tolist(),
                    "cell": round_coordinates(cell).tolist(),
                    "point_count": len(piece),
                    "point_ids": ids[piece].tolist(),
                    "id_column": id_column,
                    "source": source,
                    "layer": layer,
                }
            )
    log.info("Split %d points into %d chunks of at most %d.", len(x), len(chunks), max_points)
    return chunks


def chunk_frame(chunk: dict[str, Any], points: gpd.GeoDataFrame | None = None) -> gpd.GeoDataFrame:
    """The points of one chunk, read back from ``points`` or from the chunk's source file."""
    if points is None:
        if not chunk.get("source"):
            raise GeeConfigurationError("This chunk was made from a GeoDataFrame: pass points=... to rebuild it.")
        points = read_points(chunk["source"], layer=chunk.get("layer"))
    else:
        points = read_points(points)
    id_column = chunk.get("id_column")
    if id_column is None:
        return points.iloc[chunk["point_ids"]]
    return points[points[id_column].isin(chunk["point_ids"])]


# ====================================================================== Earth Engine


def tile_to_ee_geometry(tile: dict[str, Any]) -> Any:
    """The tile as a planar ``ee.Geometry`` (edges follow the grid, not great circles).

    Needs an initialized ``ee`` (EarthEngineHook.initialize_ee). ``tile`` may be compact
    (:mod:`airflow_provider_gee.utils.compact_tiles`)."""
    import ee

    return ee.Geometry(expand_tile(tile)["geometry"], None, False)


def chunk_to_ee_feature_collection(
    chunk: dict[str, Any], points: gpd.GeoDataFrame | None = None, properties: Sequence[str] | None = None
) -> Any:
    """The chunk's points as an ``ee.FeatureCollection`` (ids in property ``point_id``)."""
    import ee

    frame = chunk_frame(chunk, points)
    ids = frame[chunk["id_column"]].tolist() if chunk.get("id_column") else chunk["point_ids"]
    props = list(properties or [])
    features = [
        ee.Feature(ee.Geometry.Point([geom.x, geom.y]), {"point_id": pid, **{p: _plain(row[p]) for p in props}})
        for pid, geom, (_, row) in zip(ids, frame.geometry, frame.iterrows(), strict=True)
    ]
    return ee.FeatureCollection(features)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def ee_table_to_geodataframe(table: str, hook: EarthEngineHook) -> gpd.GeoDataFrame:
    """An EE table asset as a GeoDataFrame (EPSG:4326), read page by page over REST."""
    features = list(hook.list_features(table))
    if not features:
        return gpd.GeoDataFrame({"geometry": []}, geometry="geometry", crs=WGS84)
    return gpd.GeoDataFrame.from_features(features, crs=WGS84)
