"""Print one table of the latest benchmark results (``benchmarks/results/*.json``): our figure, the
baseline measured in the same run, and the target. ``make bench`` runs it last."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"

Row = tuple[str, str, str, str]


def _orchestration(r: dict[str, Any]) -> list[Row]:
    loop, dag = r.get("loop", {}), r.get("dag", {})
    rows = [
        ("makespan / ideal", "makespan_over_ideal", "<= 1.10"),
        ("EE idle while tiles wait", "ee_idle_while_waiting", "<= 0.05"),
        ("EE requests per export", "ee_requests_per_export", "<= 3"),
        ("Drive peak / 10 tiles' output", "drive_peak_over_10_tiles", "<= 1.2"),
        ("files left on Drive", "files_left_on_drive", "0"),
        ("duplicate EE tasks", "duplicate_ee_tasks", "0"),
    ]
    return [(f"B1 {label}", str(dag.get(key)), f"loop: {loop.get(key)}", target) for label, key, target in rows]


def _triggers(r: dict[str, Any]) -> list[Row]:
    ours, base = r["shared_poll"], r["one_get_per_operation"]
    return [
        (f"B2 requests/interval, {r['waiting_operations']} waiting", str(ours["requests_per_interval"]),
         str(base["requests_per_interval"]), "<= 5"),
        ("B2 CPU-s/interval", str(ours["cpu_seconds_per_interval"]), str(base["cpu_seconds_per_interval"]), "-"),
    ]  # fmt: skip


def _harvest(r: dict[str, Any]) -> list[Row]:
    rows = []
    for name, case in r.items():
        if isinstance(case, dict) and "harvest_mb_per_s" in case:
            ours = f"{case['harvest_mb_per_s']} ({case['harvest_peak_rss_above_baseline_mb']} MB)"
            base = f"{case['raw_get_mb_per_s']} ({case['raw_peak_rss_above_baseline_mb']} MB)"
            rows.append((f"B3 {name}: MB/s (peak RSS)", ours, base, ">= 0.7x raw, < 100 MB"))
    return rows


def _tiling(r: dict[str, Any]) -> list[Row]:
    return [(f"B4 cells/s, {r['cells']:,} cells", f"{r['grid_tiles_cells_per_second']:,}",
             f"{r['baseline_cells_per_second_selection_only']:,}", ">= 200,000")]  # fmt: skip


def _scale(r: dict[str, Any]) -> list[Row]:
    # ours: the recommended deployment (Celery, PostgreSQL); baseline: LocalExecutor on SQLite
    runs = {run["settings"]["deployment"]: run for run in r["runs"]}
    ours, base = runs.get("celery", runs.get("local")), runs.get("local") if "celery" in runs else None
    rows = [
        ("tiles/min", "tiles_per_minute", "report"),
        ("Airflow CPU-s per tile", "cpu_seconds_per_tile", "<= 1.5"),
        ("% of tiles retried", "tiles_retried_percent", "<= 1"),
        ("ee.Initialize requests per export", "ee_initialize_requests_per_export", "<= 0.1"),
    ]
    label = f"B5 {ours['tiles']} tiles ({ours['exports_succeeded']} ok)"
    return [(f"{label}: {name}", str(ours[key]), f"SQLite: {base[key]}" if base else "-", target)
            for name, key, target in rows]  # fmt: skip


def _mosaic(r: dict[str, Any]) -> list[Row]:
    ours, base = r["mosaic_operator_cog"], r["baseline_rasterio_merge_chunked_geotiff"]
    return [(f"B6 COG of {ours['bytes'] / 1e9:.1f} GB: peak RSS MB", str(ours["peak_rss_mb"]),
             str(base["peak_rss_mb"]), "< 500")]  # fmt: skip


TABLES: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "orchestration": _orchestration, "triggers": _triggers, "harvest": _harvest, "tiling": _tiling,
    "scale": _scale, "mosaic": _mosaic,
}  # fmt: skip


def main() -> int:
    rows: list[Row] = [("figure", "ours", "baseline (same run)", "target")]
    for name, fn in TABLES.items():
        path = RESULTS / f"{name}.json"
        if path.exists():
            rows += fn(json.loads(path.read_text()))
        else:
            rows.append((name, "not run", "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
