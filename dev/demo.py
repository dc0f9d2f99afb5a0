"""``make demo``: the tiled image export example DAG, end to end, on a real local Airflow and the
emulator.

Starts ``gee-emulator`` (EE runs 3 tasks at once, 2-second tasks, a Drive quota of 450 kB that the
run's ~620 kB of GeoTIFFs would exceed without harvesting), a private AIRFLOW_HOME with the real
api-server, scheduler, dag-processor and triggerer, the ``gee_tasks`` pool (10 slots,
include_deferred) and the connection; triggers ``gee_tiled_image_export`` over 40 tiles, waits,
checks every harvested file's md5, stops everything, and writes ``summary.json`` and ``tiles.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from dev.airflow_stack import AirflowStack

ROOT = Path(__file__).resolve().parents[1]
#: 8 x 5 cells of 0.02 degrees near Berlin (slightly inset so no cell only touches the edge)
DEMO_REGION = [13.1005, 52.3605, 13.2595, 52.4595]


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def run_demo(
    out: Path,
    region: list[float] = DEMO_REGION,
    cell_size: float = 0.02,
    ee_concurrency: int = 3,
    task_seconds: float = 2.0,
    drive_quota_bytes: int = 450_000,
    example: Path = ROOT / "example_dags" / "gee_tiled_image_export.py",
) -> dict[str, Any]:
    """Run the example DAG once; return the summary (also written to ``out/summary.json``)."""
    started = time.monotonic()
    run = run_example(
        out,
        example,
        "gee_tiled_image_export",
        {"region": region, "cell_size": cell_size, "destination": str(out / "harvest"),
         "report_dir": str(out / "report"), "folder": "gee_demo"},
        emulator_args={"ee-concurrency": ee_concurrency, "task-seconds": task_seconds,
                       "drive-quota-bytes": drive_quota_bytes},
    )  # fmt: skip
    return _summarize(out, run["state"], run["task_instances"], run["stats"], time.monotonic() - started)


@contextlib.contextmanager
def emulator_process(emulator_args: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """``gee-emulator`` in its own process (as in production, the service is not in the client's
    process); yields its URL and an Airflow connection (JSON) for it.

    :param emulator_args: options without the dashes, e.g. ``{"task-seconds": 2}``.
    """
    options = [part for key, value in emulator_args.items() for part in (f"--{key}", str(value))]
    emulator = subprocess.Popen(
        [sys.executable, "-m", "gee_emulator", "--port", "0", "--print-connection",
         "--project", "gee-demo-project", *options],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = emulator.stdout.readline().strip().removeprefix("listening on ")
        conn = emulator.stdout.readline().strip()
        print(f"emulator at {url} ({' '.join(options)})", flush=True)
        yield url, conn
    finally:
        emulator.terminate()
        emulator.wait(timeout=30)


def run_example(
    out: Path,
    example: Path,
    dag_id: str,
    conf: dict[str, Any],
    emulator_args: dict[str, Any],
    pools: dict[str, int] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 3600,
) -> dict[str, Any]:
    """Run one DAG file once on a fresh emulator and a fresh local Airflow; return what happened.

    :param out: working directory (emptied): ``dags/`` with only this file, ``airflow/`` (home, logs).
    :param emulator_args: ``gee-emulator`` options without dashes, e.g. ``{"task-seconds": 2}``.
    :param pools: pools to create (default ``{"gee_tasks": 10}``), all with include_deferred.
    :return: the run's state, its task instances and its start/end dates, the emulator's stats and
        operation times, and the CPU seconds Airflow's processes spent between trigger and end
        (in all and by process: see :meth:`AirflowStack.cpu_seconds_by_process`).
    """
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    dags_folder = out / "dags"  # this example only: the scheduled examples would add runs of their own
    dags_folder.mkdir()
    shutil.copy(example, dags_folder)
    with emulator_process(emulator_args) as (url, conn):
        stack_env = {"AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": conn, **(env or {})}
        with AirflowStack(out / "airflow", dags_folder, env=stack_env, pools=pools) as stack:
            print(f"airflow api-server at {stack.url}; scheduler, dag-processor and triggerer started", flush=True)
            stack.wait_for_dag(dag_id)
            cpu_before = stack.cpu_seconds_by_process()
            run_id = stack.trigger(dag_id, conf)
            print(f"triggered {run_id}; waiting ...", flush=True)
            state = stack.wait_for_run(dag_id, run_id, timeout=timeout)
            cpu = {k: v - cpu_before.get(k, 0.0) for k, v in stack.cpu_seconds_by_process().items()}
            dag_run = stack.api("GET", f"dags/{dag_id}/dagRuns/{run_id}")
            tis = stack.task_instances(dag_id, run_id)
        stats = requests.get(f"{url}/_emulator/stats", timeout=30).json()
        operations = requests.get(f"{url}/_emulator/operations", timeout=60).json()["operations"]
    return {"state": state, "task_instances": tis, "dag_run": dag_run, "stats": stats, "operations": operations,
            "airflow_cpu_seconds": round(sum(cpu.values()), 1),
            "airflow_cpu_seconds_by_process": {k: round(v, 1) for k, v in sorted(cpu.items())}}  # fmt: skip


def _summarize(out: Path, state: str, tis: list[dict[str, Any]], stats: dict[str, Any], wall: float) -> dict[str, Any]:
    reports = list((out / "report").glob("*/manifest.json"))
    manifest = json.loads(reports[0].read_text()) if reports else {"records": [], "tiles": 0}
    files = [f for r in manifest["records"] for f in r["files"]]
    bad_md5 = [f["path"] for f in files if not Path(f["path"]).exists() or _md5(Path(f["path"])) != f["md5"]]
    exports = [ti for ti in tis if ti["task_id"] == "tile_pipeline.export"]
    if reports:
        shutil.copy(reports[0].with_name("tiles.png"), out / "tiles.png")
    summary = {
        "dag_run_state": state,
        "tiles": len(exports),
        "ee_operations": stats["operations"],
        "ee_operations_by_state": stats["operations_by_state"],
        "succeeded": sum(ti["state"] == "success" for ti in exports),
        "failed": sum(ti["state"] != "success" for ti in exports),
        "tiles_retried": sum((ti.get("try_number") or 1) > 1 for ti in exports),
        "peak_in_flight": stats["peak_in_flight"],
        "files_harvested": len(files),
        "bytes_harvested": sum(f["size"] for f in files),
        "md5_mismatches": len(bad_md5),
        "drive_peak_bytes": stats["drive_peak_bytes"],
        "drive_bytes_left": stats["drive_bytes"],
        "ee_requests": stats["requests"],
        "wall_seconds": round(wall, 1),
        "mosaic": _mosaic_facts(out),
        "manifest": str(reports[0]) if reports else None,
        "tiles_png": str(out / "tiles.png") if reports else None,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _mosaic_facts(out: Path) -> dict[str, Any] | None:
    """The COG the example's mosaic task wrote, as rasterio sees it."""
    import rasterio

    cogs = list((out / "harvest").glob("*/mosaic/mosaic.tif"))
    if not cogs:
        return None
    with rasterio.open(cogs[0]) as cog:
        return {"cog": str(cogs[0]), "width": cog.width, "height": cog.height, "bands": cog.count,
                "layout": cog.tags(ns="IMAGE_STRUCTURE").get("LAYOUT"), "bounds": list(cog.bounds)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "demo-output"))
    args = parser.parse_args(argv)
    summary = run_demo(Path(args.out))
    print(json.dumps({k: v for k, v in summary.items() if k != "ee_requests"}, indent=2))
    ok = (
        summary["succeeded"] == summary["tiles"] >= 40
        and summary["peak_in_flight"] <= 10
        and summary["drive_bytes_left"] == 0
        and summary["md5_mismatches"] == 0
        and summary["files_harvested"] >= summary["tiles"]
        and (summary["mosaic"] or {}).get("layout") == "COG"
    )
    print("demo OK" if ok else "demo FAILED: see the summary above and demo-output/airflow/*.log")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
