"""Compact tile dicts: what every mapped task pulls, kept small.

Airflow hands a mapped task its item by pulling the upstream's *whole* list from XCom (from the
metadata database through the api-server, or from object storage) and decoding it in the task
process, for every mapped task instance and try: O(tiles^2) bytes per run. Most tiles
of a grid in degrees are plain rectangles whose ``geometry`` and ``cell`` only repeat the
``bbox``; leaving those out halves the list (2,000 tiles: 614,800 -> 280,400 bytes of JSON).

A compact tile leaves out

- ``geometry`` where it is the rectangle of the tile's ``cell`` (of its ``bbox`` where it has no
  ``cell``), ring ``[[w, s], [e, s], [e, n], [w, n], [w, s]]`` exactly as the tiling functions write it;
- ``cell`` of a grid tile (one with ``grid``) where it equals the ``bbox``.

:func:`expand_tile` puts them back exactly. Every operator of this package expands the tiles it is
given, so a ``build(tile, context)`` always sees ``tile["geometry"]``; tasks of your own that read
a compact tile list call :func:`expand_tile` on each tile. Light on purpose (no geometry library):
export operators import it on every task start.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def rectangle(bounds: Sequence[float]) -> dict[str, Any]:
    """The GeoJSON polygon of ``bounds`` (``[minx, miny, maxx, maxy]``), counter-clockwise from
    the south-west corner: the ring every tiling function writes for a rectangular tile."""
    w, s, e, n = bounds
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


def _is_rectangle(geometry: Any, bounds: Sequence[float] | None) -> bool:
    """Whether ``geometry`` is exactly :func:`rectangle` of ``bounds`` (a ring in another order or
    of tuples is not: only what :func:`expand_tile` rebuilds to the same value may be left out)."""
    if not isinstance(geometry, dict) or bounds is None or len(bounds) != 4:
        return False
    return geometry == rectangle(bounds)


def compact_tile(tile: dict[str, Any]) -> dict[str, Any]:
    """``tile`` without the ``geometry`` and ``cell`` that :func:`expand_tile` can rebuild exactly;
    ``tile`` itself (not a copy) when nothing can be left out."""
    cell, bbox = tile.get("cell"), tile.get("bbox")
    if "grid" in tile and cell is None:  # expanding would give it one
        return tile
    drop_geometry = "geometry" in tile and _is_rectangle(tile["geometry"], cell if cell is not None else bbox)
    drop_cell = "grid" in tile and cell is not None and bbox is not None and list(cell) == list(bbox)
    if not (drop_geometry or drop_cell):
        return tile
    left_out = {"geometry"} if drop_geometry else set()
    if drop_cell:
        left_out.add("cell")
    return {k: v for k, v in tile.items() if k not in left_out}


def compact_tiles(tiles: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """:func:`compact_tile` of every tile."""
    return [compact_tile(t) for t in tiles]


def expand_tile(tile: Any) -> Any:
    """The full tile of a compact one (a new dict); ``tile`` itself when it is complete, or not a
    tile dict at all (an ``XComArg`` while the DAG is parsed, ``None``)."""
    if not isinstance(tile, dict) or "bbox" not in tile:
        return tile
    missing_cell = "grid" in tile and "cell" not in tile
    if "geometry" in tile and not missing_cell:
        return tile
    full = dict(tile)
    if missing_cell:
        full["cell"] = list(tile["bbox"])
    if "geometry" not in full:
        full["geometry"] = rectangle(full.get("cell") or full["bbox"])
    return full


def expand_tiles(tiles: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """:func:`expand_tile` of every tile."""
    return [expand_tile(t) for t in tiles]
