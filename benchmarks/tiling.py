"""B4: tiling throughput for a 1,000,000-cell grid over a continent-sized region.

Prints JSON: cells/second of ``grid_tiles`` (tile dicts included), side by side with a baseline
measured in the same run on the same grid: every candidate cell built as a geometry and tested
against the region (no block pruning). Run: ``.venv/bin/python benchmarks/tiling.py``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import shapely

from airflow_provider_gee.utils.tiling import grid_tiles


def continent(vertices: int = 4000, seed: int = 3) -> shapely.Polygon:
    """A continent-like blob about 70 degrees across with a ragged coastline."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 2 * np.pi, vertices, endpoint=False)
    radius = 35 * (1 + 0.15 * np.sin(3 * t) + 0.08 * np.sin(11 * t) + 0.02 * rng.standard_normal(vertices))
    return shapely.Polygon(np.column_stack([20 + radius * np.cos(t), 5 + radius * 0.9 * np.sin(t)])).buffer(0)


def baseline(region: shapely.Polygon, size: float, ox: float = -180.0, oy: float = -90.0) -> int:
    minx, miny, maxx, maxy = region.bounds
    cols, rows = np.meshgrid(np.arange(np.floor((minx - ox) / size), np.ceil((maxx - ox) / size)),
                             np.arange(np.floor((miny - oy) / size), np.ceil((maxy - oy) / size)))  # fmt: skip
    x, y = ox + cols.ravel() * size, oy + rows.ravel() * size
    cells = shapely.box(x, y, x + size, y + size)
    shapely.prepare(region)
    keep = shapely.intersects(region, cells) & ~shapely.touches(region, cells)
    return int(keep.sum())


def main() -> int:
    region = continent()
    size = 0.0605
    t0 = time.perf_counter()
    tiles = grid_tiles(region, size, max_tiles=2_000_000)
    ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    base_count = baseline(region, size)
    base = time.perf_counter() - t0
    result = {
        "benchmark": "B4 tiling",
        "region_vertices": len(region.exterior.coords),
        "cell_size_degrees": size,
        "cells": len(tiles),
        "grid_tiles_seconds": round(ours, 3),
        "grid_tiles_cells_per_second": round(len(tiles) / ours),
        "baseline_cells": base_count,
        "baseline_seconds_selection_only": round(base, 3),
        "baseline_cells_per_second_selection_only": round(base_count / base),
        "target_cells_per_second": 200_000,
    }
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "tiling.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0 if len(tiles) == base_count else 1


if __name__ == "__main__":
    sys.exit(main())
