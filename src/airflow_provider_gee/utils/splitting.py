"""Adaptive splitting: the tile that EE refuses for its size is exported as quadrants instead.

Two things live here, both free of Airflow and of ``ee``: the one list of EE's size errors (the
messages after which smaller pieces help, and only those), and the geometry of the pieces. A part
of tile ``T`` is ``T_q0`` .. ``T_q3`` (0 south-west, 1 south-east, 2 north-west, 3 north-east, as
for point chunks), a part of a part ``T_q0_q3``; its geometry is computed again from the tile and
the part's id whenever it is needed, so a split plan in the task state store is a list of ids.

Grid tiles are cut in the grid's CRS at the cell's middle, moved onto the export's pixel lattice
when the export's CRS is the grid's (``snap``), so the parts' pixels are the tile's pixels and the
outputs mosaic without seams or doubled rows. Point chunks are cut at their quadtree square's
middle and take their own points along.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from airflow_provider_gee.exceptions import GeeConfigurationError
from airflow_provider_gee.utils.naming import PART_SEPARATOR

#: EE's errors that mean "this computation is too big for one task": a smaller region helps. From
#: EE's debugging guide ("Scaling errors") and the errors of ``Export``/``reduceRegion``; matched
#: anywhere in the message, without letter case. Errors of rate (429, "Too many concurrent
#: aggregations"), of quota and of the user's own ``maxPixels`` guard ("Export too large:
#: specified N pixels", the fix is ``max_pixels``) are not on it.
SIZE_ERRORS: tuple[str, ...] = (
    "User memory limit exceeded",
    "Computation timed out",
    "Too many pixels in the region",
    "Output of image computation is too large",
    "Computed value is too large",
    "Request payload size exceeds the limit",
    "Collection query aborted after accumulating over",
)
_SIZE_ERROR = re.compile("|".join(re.escape(text) for text in SIZE_ERRORS), re.IGNORECASE)
_PART = re.compile(r"_q([0-3])")


def is_size_error(message: str | None) -> bool:
    """Whether EE's ``message`` is one of :data:`SIZE_ERRORS` (splitting the work may help)."""
    return bool(message and _SIZE_ERROR.search(message))


def part_path(tile_id: str, part_id: str) -> list[int]:
    """The quadrants leading from tile ``tile_id`` to its part ``part_id`` (``T_q0_q3`` -> [0, 3])."""
    if not part_id.startswith(tile_id):
        raise ValueError(f"{part_id!r} is not a part of tile {tile_id!r}")
    suffix = part_id[len(tile_id) :]
    path = [int(q) for q in _PART.findall(suffix)]
    if "".join(f"_q{q}" for q in path) != suffix:
        raise ValueError(f"{part_id!r} is not a part of tile {tile_id!r}")
    return path


def split_tile(tile: dict[str, Any], snap: Sequence[float] | None = None) -> list[dict[str, Any]]:
    """The non-empty quadrants of ``tile`` as tiles of their own (``<tile_id>_q0`` .. ``_q3``).

    :param tile: a grid tile, a point chunk, or any tile dict with ``tile_id`` and ``geometry``.
    :param snap: ``(x0, dx, y0, dy)``: the export's pixel lattice in the grid's CRS (origin and
        pixel size); the cut moves to the lattice line nearest the middle.
    :raises GeeConfigurationError: when the tile cannot be cut (a point chunk rebuilt from a
        GeoDataFrame has no points to cut; a tile no pixel edge of the export crosses).
    """
    import shapely
    from shapely.geometry import box, mapping, shape

    geometry = shape(tile["geometry"])
    grid = tile.get("grid")
    if grid and tile.get("cell"):  # a grid tile: cut the cell in the grid's CRS
        minx, miny, maxx, maxy = tile["cell"]
        overlap = float(tile.get("overlap", (maxx - minx - grid["cell_size"]) / 2))
        inner = (minx + overlap, miny + overlap, maxx - overlap, maxy - overlap)
    else:  # a chunk's quadtree square, or the tile's bounds, in lon/lat
        inner = tuple(tile.get("cell") or shapely.bounds(geometry).tolist())
        overlap = 0.0
    mx = _cut(inner[0], inner[2], None if snap is None else snap[:2])
    my = _cut(inner[1], inner[3], None if snap is None else snap[2:])
    if mx is None or my is None:
        raise GeeConfigurationError(
            f"Tile {tile['tile_id']} is too small to split: no pixel edge of the export crosses it."
        )
    quadrants = [
        (inner[0], inner[1], mx, my),
        (mx, inner[1], inner[2], my),
        (inner[0], my, mx, inner[3]),
        (mx, my, inner[2], inner[3]),
    ]
    to_wgs84 = _to_wgs84(grid["crs"]) if grid and tile.get("cell") else None
    points = _chunk_points(tile) if "point_ids" in tile else None
    parts = []
    reach = inner[2] - inner[0] + inner[3] - inner[1]
    for q, (a, b, c, d) in enumerate(quadrants):
        cell = [a - overlap, b - overlap, c + overlap, d + overlap]
        # the cutter reaches well past the tile's outer edges, so the parts keep the tile's own
        # edges there (no sliver from edges drawn twice) and only the cut lines are new
        square = box(
            a - reach if a == inner[0] else cell[0], b - reach if b == inner[1] else cell[1],
            c + reach if c == inner[2] else cell[2], d + reach if d == inner[3] else cell[3],
        )  # fmt: skip
        if to_wgs84 is not None:
            square = to_wgs84(shapely.segmentize(square, (c - a) / 8))
        piece = shapely.intersection(geometry, square)
        part: dict[str, Any] = {**tile, "tile_id": f"{tile['tile_id']}{PART_SEPARATOR}{q}", "cell": _round_list(cell)}
        if points is not None:
            ids, x, y = points
            east, north = x >= mx, y >= my
            mine = (east == bool(q & 1)) & (north == bool(q >> 1))
            if not mine.any():
                continue
            part |= {
                "point_ids": [pid for pid, m in zip(ids, mine.tolist(), strict=True) if m],
                "point_count": int(mine.sum()),
                "bbox": _round_list([x[mine].min(), y[mine].min(), x[mine].max(), y[mine].max()]),
                "geometry": mapping(box(*cell)),
            }
        else:
            if piece.is_empty or piece.area == 0:
                continue
            part |= {"geometry": mapping(piece), "bbox": _round_list(shapely.bounds(piece).tolist())}
        if grid and tile.get("cell"):
            part["overlap"] = overlap
        parts.append(part)
    return parts


def part_tile(tile: dict[str, Any], part_id: str, snap: Sequence[float] | None = None) -> dict[str, Any]:
    """The part ``part_id`` of ``tile``, cut again from the tile (the same every time)."""
    current = tile
    for q in part_path(tile["tile_id"], part_id):
        wanted = f"{current['tile_id']}_q{q}"
        found = next((p for p in split_tile(current, snap) if p["tile_id"] == wanted), None)
        if found is None:
            raise ValueError(f"Part {wanted} of tile {tile['tile_id']} is empty")
        current = found
    return current


def _cut(low: float, high: float, lattice: Sequence[float] | None) -> float | None:
    """The middle of ``[low, high]``, moved onto the lattice ``(origin, step)`` if one is given;
    ``None`` when no lattice line lies strictly inside."""
    middle = (low + high) / 2
    if lattice is None:
        return middle
    origin, step = lattice
    step = abs(step)
    snapped = origin + round((middle - origin) / step) * step
    if not low < snapped < high:
        return None
    return snapped


def _to_wgs84(crs: str) -> Any:
    """A function mapping a shapely geometry from ``crs`` to lon/lat (identity for lon/lat)."""
    from pyproj import CRS, Transformer

    source = CRS.from_user_input(crs)
    if source.equals(CRS.from_epsg(4326)):
        return lambda geometry: geometry
    import numpy as np
    import shapely

    transformer = Transformer.from_crs(source, "EPSG:4326", always_xy=True)
    return lambda geometry: shapely.transform(
        geometry, lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1]))
    )


def _chunk_points(chunk: dict[str, Any]) -> tuple[list[Any], Any, Any]:
    """A point chunk's ids and coordinates (lon/lat), read back from its source file."""
    import numpy as np

    from airflow_provider_gee.utils.tiling import chunk_frame

    if not chunk.get("source"):
        raise GeeConfigurationError(
            f"Chunk {chunk['tile_id']} was made from a GeoDataFrame: its points cannot be read back to split it. "
            "Chunk a point file instead, or use a smaller max_points."
        )
    frame = chunk_frame(chunk)
    ids = frame[chunk["id_column"]].tolist() if chunk.get("id_column") else list(chunk["point_ids"])
    return ids, np.asarray(frame.geometry.x), np.asarray(frame.geometry.y)


def _round_list(values: Sequence[float]) -> list[float]:
    """Coordinates rounded as the tiles' own (:mod:`~airflow_provider_gee.utils.tiling`)."""
    from airflow_provider_gee.utils.tiling import round_coordinates

    return round_coordinates(values).tolist()


class SplitPlan:
    """The parts of a split tile and where each stands; kept in the task state store (JSON).

    ``parts`` are in export order, each ``{"tile_id", "depth", "generation", "operation",
    "state", "result"}``; a part that EE refuses for its size is replaced, in place, by its own
    quadrants. ``failed`` lists the EE tasks refused for their size (the tile's own first), whose
    EECU count toward the tile's cost.
    """

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    @classmethod
    def start(cls, tile: dict[str, Any], failure: dict[str, Any], snap: Sequence[float] | None) -> SplitPlan:
        """The plan after the whole tile failed for its size (``failure``: its EE task or refusal)."""
        parts = [_new_part(p["tile_id"], 1) for p in split_tile(tile, snap)]
        return cls({"tile_id": tile["tile_id"], "reason": failure.get("error"), "failed": [failure], "parts": parts})

    @property
    def parts(self) -> list[dict[str, Any]]:
        return self.data["parts"]

    @property
    def failed(self) -> list[dict[str, Any]]:
        return self.data["failed"]

    def current(self) -> dict[str, Any] | None:
        """The first part not yet exported (parts go one at a time, in order)."""
        return next((p for p in self.parts if p["state"] != "SUCCEEDED"), None)

    def replace(self, part: dict[str, Any], failure: dict[str, Any], pieces: list[dict[str, Any]]) -> None:
        """Put ``pieces`` (tiles from :func:`split_tile`) where ``part`` was, after EE refused it."""
        at = self.parts.index(part)
        self.failed.append(failure)
        self.parts[at : at + 1] = [_new_part(p["tile_id"], part["depth"] + 1) for p in pieces]

    def eecu_seconds(self) -> float:
        """What the tile has cost so far: refused EE tasks and exported parts."""
        return sum(float(f.get("eecu_seconds") or 0) for f in self.failed) + sum(
            float((p["result"] or {}).get("eecu_seconds") or 0) for p in self.parts
        )

    def depth(self) -> int:
        return max(p["depth"] for p in self.parts)


def _new_part(tile_id: str, depth: int) -> dict[str, Any]:
    return {"tile_id": tile_id, "depth": depth, "generation": 0, "operation": None, "state": None, "result": None}
