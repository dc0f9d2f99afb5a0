"""B5: one run of the tiled export example DAG over 2,000 tiles on this machine.

The emulator's tasks take ``--task-seconds`` (default 0.05: near zero, so the figure is Airflow's
own throughput, not EE's), Drive is unlimited, ``[core] max_map_length`` is raised to 4,096 on
every Airflow component, the ``gee_tasks`` pool has ``--pool`` slots (default 10, the user's
``maxTasks``). Reports tiles per minute (export and harvest done, from the run's start to its end)
and the CPU seconds per tile spent by all Airflow processes and task processes between trigger and
end. Prints JSON, also written to ``benchmarks/results/scale.json``.

Run: ``.venv/bin/python benchmarks/scale.py [--tiles 2000]`` (tens of minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CELL = 0.02


def _time(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def region_for(tiles: int) -> list[float]:
    """A bbox near Berlin covered by exactly ``tiles`` cells when ``tiles`` = cols x rows (50 columns)."""
    cols = min(50, tiles)
    rows = math.ceil(tiles / cols)
    # inset by 0.0005 degrees so no cell only touches the edge
    return [13.0005, 52.0005, 13.0 + cols * CELL - 0.0005, 52.0 + rows * CELL - 0.0005]


def xcom_storage_env(folder: Path, threshold: int = 65536) -> dict[str, str]:
    """Airflow settings that keep XComs of ``threshold`` bytes or more in files under ``folder``."""
    return {
        "AIRFLOW__CORE__XCOM_BACKEND": "airflow.providers.common.io.xcom.backend.XComObjectStorageBackend",
        "AIRFLOW__COMMON_IO__XCOM_OBJECTSTORAGE_PATH": f"file://{folder}",
        "AIRFLOW__COMMON_IO__XCOM_OBJECTSTORAGE_THRESHOLD": str(threshold),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=2000, help="a multiple of 50")
    parser.add_argument("--task-seconds", type=float, default=0.05)
    parser.add_argument("--pool", type=int, default=10)
    parser.add_argument(
        "--xcom-storage", action="store_true",
        help="keep XComs over 64 kB (the tile list) in files: Airflow's XComObjectStorageBackend (common.io)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="bench-airflow-"))
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    from dev.demo import run_example

    out = Path(tempfile.mkdtemp(prefix="bench-b5-"))
    env = {"AIRFLOW__CORE__MAX_MAP_LENGTH": "4096"}
    if args.xcom_storage:
        env |= xcom_storage_env(Path(tempfile.mkdtemp(prefix="bench-b5-xcom-")))
    started = time.monotonic()
    run = run_example(
        out,
        ROOT / "example_dags" / "gee_tiled_image_export.py",
        "gee_tiled_image_export",
        {"region": region_for(args.tiles), "cell_size": CELL, "folder": "gee_b5",
         "output": str(out / "harvest"), "report_dir": str(out / "report")},
        {"ee-concurrency": 10, "task-seconds": args.task_seconds},
        pools={"gee_tasks": args.pool},
        env=env,
        timeout=4 * 3600,
    )  # fmt: skip
    tis = run["task_instances"]
    exports = [ti for ti in tis if ti["task_id"] == "tile_pipeline.export"]
    harvests = [ti for ti in tis if ti["task_id"] == "tile_pipeline.harvest"]
    seconds = _time(run["dag_run"]["end_date"]) - _time(run["dag_run"]["start_date"])
    ops = run["operations"]
    result = {
        "benchmark": "B5 scale",
        "settings": {"tiles": args.tiles, "pool_slots": args.pool, "ee_concurrency": 10,
                     "task_seconds": args.task_seconds,
                     "xcom_backend": "object storage (files) over 64 kB" if args.xcom_storage else "metadata database",
                     "executor": "LocalExecutor (SQLite)", "cores": os.cpu_count()},
        "dag_run_state": run["state"],
        "tiles": len(exports),
        "exports_succeeded": sum(ti["state"] == "success" for ti in exports),
        "harvests_succeeded": sum(ti["state"] == "success" for ti in harvests),
        "tiles_retried": sum((ti.get("try_number") or 1) > 1 for ti in exports),
        "ee_operations": len(ops),
        "duplicate_ee_tasks": len(ops) - len({op["description"] for op in ops}),
        "run_seconds": round(seconds, 1),
        "tiles_per_minute": round(len(exports) / seconds * 60, 1),
        "airflow_cpu_seconds": run["airflow_cpu_seconds"],
        "cpu_seconds_per_tile": round(run["airflow_cpu_seconds"] / max(len(exports), 1), 3),
        "cpu_seconds_per_tile_by_process": {
            name: round(spent / max(len(exports), 1), 3)
            for name, spent in run["airflow_cpu_seconds_by_process"].items()
        },
        "peak_in_flight": run["stats"]["peak_in_flight"],
        "files_left_on_drive": run["stats"]["drive_files"],
        "wall_seconds_with_setup": round(time.monotonic() - started, 1),
    }  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "scale_xcom_storage.json" if args.xcom_storage else "scale.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0 if result["exports_succeeded"] == result["tiles"] == args.tiles else 1


if __name__ == "__main__":
    sys.exit(main())
