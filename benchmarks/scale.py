"""B5: one run of the tiled export example DAG over 2,000 tiles on this machine.

On one of two deployments (``--deployment``): ``local`` (LocalExecutor on SQLite, one scheduler,
triggerer and dag-processor) or ``celery``, the one we recommend (docker/deployment.env:
CeleryExecutor, two workers, two schedulers, two triggerers, on this machine's PostgreSQL and Redis,
in a database and Redis index of the run's own). ``--deployment both`` runs them one after the
other and prints both side by side.

The emulator's tasks take ``--task-seconds`` (default 0.05: near zero, so the figure is Airflow's
own throughput, not EE's), Drive is unlimited, ``[core] max_map_length`` is raised to 4,096 on
every Airflow component, the ``gee_tasks`` pool has ``--pool`` slots (default 10, the user's
``maxTasks``). Reports tiles per minute (export and harvest done, from the run's start to its end)
and the CPU seconds per tile spent by all Airflow processes and task processes between trigger and
end. Prints JSON, also written to ``benchmarks/results/scale_<deployment>_<tiles>.json`` (and the latest
run or pair to ``scale.json``).

Run: ``.venv/bin/python benchmarks/scale.py [--tiles 2000] [--deployment both]`` (tens of minutes
per run on 2 cores). Baselines of what we changed, for a run of their own next to one without the
flag: ``--no-preload`` (tasks import the Google clients themselves) and ``--full-tiles`` (the
tiling task returns full tiles, not compact ones).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import signal
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


EXAMPLE = ROOT / "example_dags" / "gee_tiled_image_export.py"
TILING_CALL = 'GridTilesOperator(task_id="tiles",'


def example_with_full_tiles() -> Path:
    """A copy of the example whose tiling task returns full tiles (``compact=False``): the baseline
    of compact tiles."""
    text = EXAMPLE.read_text()
    if TILING_CALL not in text:
        raise RuntimeError(f"{EXAMPLE.name} has no {TILING_CALL!r} to give compact=False")
    copy = Path(tempfile.mkdtemp(prefix="bench-b5-full-tiles-")) / EXAMPLE.name
    copy.write_text(text.replace(TILING_CALL, f"{TILING_CALL} compact=False,", 1))
    return copy


def run_b5(
    tiles: int,
    task_seconds: float,
    pool: int,
    xcom_storage: bool,
    deployment: str,
    preload: bool = True,
    compact: bool = True,
) -> dict:
    """One B5 run on one deployment; its JSON result. ``preload``: with the recommended
    ``airflow_local_settings.py`` (tasks inherit their imports from the worker); ``compact``: the
    example as it is (compact tiles), else with full ones."""
    from dev.airflow_stack import LOCAL_SETTINGS
    from dev.demo import run_example

    out = Path(tempfile.mkdtemp(prefix=f"bench-b5-{deployment}-"))
    env = {"AIRFLOW__CORE__MAX_MAP_LENGTH": "4096"} if deployment == "local" else {}
    if xcom_storage and deployment == "local":  # the recommended deployment keeps them there anyway
        env |= xcom_storage_env(Path(tempfile.mkdtemp(prefix="bench-b5-xcom-")))
    started = time.monotonic()
    run = run_example(
        out,
        EXAMPLE if compact else example_with_full_tiles(),
        "gee_tiled_image_export",
        {"region": region_for(tiles), "cell_size": CELL, "folder": "gee_b5",
         "output": str(out / "harvest"), "report_dir": str(out / "report")},
        {"ee-concurrency": 10, "task-seconds": task_seconds},
        pools={"gee_tasks": pool},
        env=env,
        timeout=4 * 3600,
        deployment=deployment,
        local_settings=LOCAL_SETTINGS if preload else None,
    )  # fmt: skip
    tis = run["task_instances"]
    exports = [ti for ti in tis if ti["task_id"] == "tile_pipeline.export"]
    harvests = [ti for ti in tis if ti["task_id"] == "tile_pipeline.harvest"]
    seconds = _time(run["dag_run"]["end_date"]) - _time(run["dag_run"]["start_date"])
    ops = run["operations"]
    requests = run["stats"]["requests"]
    retried = sum((ti.get("try_number") or 1) > 1 for ti in exports)
    if deployment == "local":
        executor = "LocalExecutor (SQLite), 1 scheduler, 1 triggerer"
    else:
        executor = "CeleryExecutor (PostgreSQL, Redis), 2 workers, 2 schedulers, 2 triggerers"
    xcom = "object storage (files) over 64 kB" if xcom_storage or deployment == "celery" else "metadata database"
    result = {
        "benchmark": "B5 scale",
        "settings": {"tiles": tiles, "pool_slots": pool, "ee_concurrency": 10, "task_seconds": task_seconds,
                     "xcom_backend": xcom, "deployment": deployment, "executor": executor,
                     "task_modules_preloaded": preload, "compact_tiles": compact,
                     "cores": os.cpu_count()},
        "dag_run_state": run["state"],
        "tiles": len(exports),
        "exports_succeeded": sum(ti["state"] == "success" for ti in exports),
        "harvests_succeeded": sum(ti["state"] == "success" for ti in harvests),
        "tiles_retried": retried,
        "tiles_retried_percent": round(100 * retried / max(len(exports), 1), 2),
        "ee_operations": len(ops),
        "duplicate_ee_tasks": len(ops) - len({op["description"] for op in ops}),
        # what ee.Initialize fetches (the discovery document, the algorithm list), per export
        "ee_initialize_requests_per_export": round(
            (requests.get("ee.discovery", 0) + requests.get("ee.algorithms.list", 0)) / max(len(ops), 1), 3
        ),
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
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=2000, help="a multiple of 50")
    parser.add_argument("--task-seconds", type=float, default=0.05)
    parser.add_argument("--pool", type=int, default=10)
    parser.add_argument("--deployment", choices=("local", "celery", "both"), default="local")
    parser.add_argument(
        "--xcom-storage", action="store_true",
        help="local: keep XComs over 64 kB (the tile list) in files: Airflow's XComObjectStorageBackend (common.io); "
             "the celery deployment always does",
    )  # fmt: skip
    parser.add_argument(
        "--no-preload", action="store_true",
        help="without docker/airflow_local_settings.py: every task process imports the Google clients itself",
    )  # fmt: skip
    parser.add_argument(
        "--full-tiles", action="store_true",
        help="the tiling task returns full tiles (compact=False): every mapped task pulls the larger list",
    )  # fmt: skip
    args = parser.parse_args(argv)
    # stopped with SIGTERM (kill, a CI timeout): unwind, so that the run's processes stop and its
    # database and Redis index are removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="bench-airflow-"))
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    deployments = ("local", "celery") if args.deployment == "both" else (args.deployment,)
    preload = not args.no_preload
    results = [
        run_b5(args.tiles, args.task_seconds, args.pool, args.xcom_storage, d, preload, not args.full_tiles)
        for d in deployments
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    for result in results:
        d = result["settings"]["deployment"]
        suffix = "_xcom_storage" if args.xcom_storage and d == "local" else ""
        suffix += "" if preload else "_no_preload"
        suffix += "_full_tiles" if args.full_tiles else ""
        (RESULTS / f"scale_{d}{suffix}_{args.tiles}.json").write_text(json.dumps(result, indent=2))
    (RESULTS / "scale.json").write_text(json.dumps({"runs": results}, indent=2))  # the latest, for summary.py
    print(json.dumps(results[0] if len(results) == 1 else {"side_by_side": results}, indent=2))
    return 0 if all(r["exports_succeeded"] == r["tiles"] == args.tiles for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
