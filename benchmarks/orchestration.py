"""B1: the tiled export example DAG against a faithful re-implementation of the manual notebook loop.

Both run against the same emulator settings (EE runs K=3 tasks at once, each takes D seconds, the
same Drive quota) over the same N=60 tiles and the same per-tile image:

- **loop**: the notebook loop of shared/WORKFLOW.md, section 3-4, with the real ``ee`` client and
  the Google API client: ``maxTasks = 10``; for each tile, count the tasks by turning
  ``ee.batch.Task.list()`` into a string and counting ``'RUNNING'`` and ``'READY'``; while that is
  ``>= maxTasks`` sleep (60 s scaled by D / the real task duration) and count again; then
  ``Export.image.toDrive(...).start()`` and, in the same iteration, harvest the Drive folder
  (list, download by title, delete). It ends after the last submission, as the notebook does.
- **dag**: ``example_dags/gee_tiled_image_export.py`` on the real api-server, scheduler,
  dag-processor and triggerer with the ``gee_tasks`` pool (10 slots, include_deferred).

Reported for each: makespan / ideal (ideal = ceil(N/K)·D; the loop's makespan ends at its last EE
task's end, the DAG's at the end of its run, harvest and report included), the fraction of time EE
had a free slot while tiles were still waiting (from the first submission to the last tile's start),
requests per completed export by route, peak Drive bytes / (10 x the mean tile output), files left
on Drive, duplicate EE tasks. Prints JSON, also written to ``benchmarks/results/orchestration.json``.

Run: ``.venv/bin/python benchmarks/orchestration.py [--task-seconds 20]`` (about 2 x N/K x D).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
#: 10 x 6 cells of 0.02 degrees near Berlin: 60 tiles
REGION = [13.1005, 52.3605, 13.2995, 52.4795]
CELL = 0.02
SCALE = 30
FOLDER = "gee_b1"
MAX_TASKS = 10


def _time(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def ee_figures(operations: list[dict[str, Any]], n_tiles: int, k: int, d: float) -> dict[str, Any]:
    """Figures read from the emulator's operation times (one clock for both contenders)."""
    done = [op for op in operations if op.get("startTime") and op.get("endTime")]
    starts = sorted(_time(op["startTime"]) for op in done)
    window = (_time(min(op["createTime"] for op in operations)), starts[-1]) if starts else (0.0, 0.0)
    # EE had a free slot while tiles were waiting: fewer than K running between the first
    # submission and the moment the last tile started (after that, nothing waits)
    events = sorted([(_time(op["startTime"]), 1) for op in done] + [(_time(op["endTime"]), -1) for op in done])
    idle = 0.0
    running, last = 0, window[0]
    for t, delta in events:
        t = min(max(t, window[0]), window[1])
        if running < k:
            idle += t - last
        running, last = running + delta, t
    span = window[1] - window[0]
    descriptions = [op["description"] for op in operations]
    return {
        "ee_operations": len(operations),
        "succeeded": sum(op["state"] == "SUCCEEDED" for op in operations),
        "duplicate_ee_tasks": len(descriptions) - len(set(descriptions)),
        "first_submit": window[0],
        "last_end": max((_time(op["endTime"]) for op in done), default=0.0),
        "ee_idle_while_waiting": round(idle / span, 3) if span > 0 else 0.0,
        "ideal_seconds": math.ceil(n_tiles / k) * d,
    }


def per_export(stats: dict[str, Any], completed: int) -> dict[str, Any]:
    routes = {r: n for r, n in stats["requests"].items() if not r.startswith("admin.")}
    setup_routes = ("ee.discovery", "ee.algorithms.list")  # what ee.Initialize fetches in each process
    ee = sum(n for r, n in routes.items() if r.startswith("ee.") and r not in setup_routes)
    setup = sum(routes.get(r, 0) for r in setup_routes)
    return {
        "ee_requests_per_export": round(ee / max(completed, 1), 2),
        "ee_client_setup_requests_per_export": round(setup / max(completed, 1), 2),
        "requests_per_export_by_route": {r: round(n / max(completed, 1), 2) for r, n in sorted(routes.items())},
    }


def manual_loop(conn: str, tiles: list[dict[str, Any]], sleep_seconds: float, out: Path) -> float:
    """The notebook loop, as users write it. Returns its start time (epoch seconds)."""
    os.environ["AIRFLOW_CONN_B1_LOOP"] = conn
    from googleapiclient.http import MediaIoBaseDownload

    from airflow_provider_gee.hooks.drive import DriveHook
    from airflow_provider_gee.hooks.earth_engine import EarthEngineHook
    from airflow_provider_gee.utils.tiling import tile_to_ee_geometry

    EarthEngineHook(gcp_conn_id="b1_loop").initialize_ee()  # the user's ee.Initialize(project=...)
    import ee

    drive = DriveHook(gcp_conn_id="b1_loop").get_conn()  # the user's OAuth'd Drive client
    out.mkdir(parents=True, exist_ok=True)
    folder_id = None

    def count_tasks() -> int:
        text = str(ee.batch.Task.list())
        return text.count("RUNNING") + text.count("READY")

    def harvest() -> None:
        nonlocal folder_id
        if folder_id is None:  # the id the user copies from the browser once the folder exists
            q = f"name = '{FOLDER}' and mimeType = 'application/vnd.google-apps.folder' and trashed = false"
            found = drive.files().list(q=q, fields="files(id)").execute()["files"]
            if not found:
                return
            folder_id = found[0]["id"]
        listing = drive.files().list(q=f"'{folder_id}' in parents and trashed=false", fields="files(id,name)")
        for f in listing.execute()["files"]:
            buf = io.FileIO(out / f["name"], "wb")
            downloader = MediaIoBaseDownload(buf, drive.files().get_media(fileId=f["id"]))
            finished = False
            while not finished:
                _, finished = downloader.next_chunk()
            buf.close()
            drive.files().delete(fileId=f["id"]).execute()

    image = ee.Image.pixelLonLat().rename(["lon", "lat"]).toFloat()
    started = time.time()
    for tile in tiles:
        n_tasks = count_tasks()
        while n_tasks >= MAX_TASKS:
            time.sleep(sleep_seconds)
            n_tasks = count_tasks()
        try:
            task = ee.batch.Export.image.toDrive(
                image=image, description=tile["tile_id"], folder=FOLDER, region=tile_to_ee_geometry(tile), scale=SCALE
            )
            task.start()
            harvest()
        except Exception:  # the notebook's bare except
            time.sleep(5)
    return started


def run_loop(args: argparse.Namespace, emulator_args: dict[str, Any], work: Path) -> dict[str, Any]:
    from airflow_provider_gee.utils.tiling import grid_tiles
    from dev.demo import emulator_process

    tiles = grid_tiles(REGION, CELL)
    sleep_seconds = 60 * args.task_seconds / args.real_task_seconds
    # the notebook's own loop exports to Drive with the key in the connection: give that service
    # account Drive storage, as an account from before 2025 still had (the Airflow side uses a
    # person's credentials, see dev/demo.py run_example)
    loop_args = {**emulator_args, "service-account-drive-quota-bytes": 10**12}
    with emulator_process(loop_args) as (url, conn):
        started = manual_loop(conn, tiles, sleep_seconds, work / "loop-harvest")
        loop_end = time.time()
        # the notebook has ended; EE keeps running what was submitted
        while requests.get(f"{url}/_emulator/stats", timeout=30).json()["in_flight"]:
            time.sleep(0.5)
        stats = requests.get(f"{url}/_emulator/stats", timeout=30).json()
        operations = requests.get(f"{url}/_emulator/operations", timeout=60).json()["operations"]
    figures = ee_figures(operations, len(tiles), args.ee_concurrency, args.task_seconds)
    harvested = sum(p.stat().st_size for p in (work / "loop-harvest").iterdir())
    return {
        "tiles": len(tiles),
        "sleep_seconds": round(sleep_seconds, 2),
        "makespan_seconds": round(figures["last_end"] - started, 1),
        "loop_seconds": round(loop_end - started, 1),
        **_common(figures, stats),
        "files_harvested": len(list((work / "loop-harvest").iterdir())),
        "bytes_harvested": harvested,
    }


def run_dag(args: argparse.Namespace, emulator_args: dict[str, Any], work: Path) -> dict[str, Any]:
    from dev.demo import run_example

    out = work / "dag"
    run = run_example(
        out,
        ROOT / "example_dags" / "gee_tiled_image_export.py",
        "gee_tiled_image_export",
        {"region": REGION, "cell_size": CELL, "scale": SCALE, "folder": FOLDER,
         "output": str(out / "harvest"), "report_dir": str(out / "report")},
        emulator_args,
    )  # fmt: skip
    exports = [ti for ti in run["task_instances"] if ti["task_id"] == "tile_pipeline.export"]
    harvests = [ti for ti in run["task_instances"] if ti["task_id"] == "tile_pipeline.harvest"]
    figures = ee_figures(run["operations"], len(exports), args.ee_concurrency, args.task_seconds)
    harvested = [p for p in (out / "harvest").rglob("*") if p.is_file()]
    return {
        "tiles": len(exports),
        "dag_run_state": run["state"],
        "makespan_seconds": round(_time(run["dag_run"]["end_date"]) - _time(run["dag_run"]["start_date"]), 1),
        "submit_delay_seconds": round(figures["first_submit"] - _time(run["dag_run"]["start_date"]), 1),
        **_common(figures, run["stats"]),
        "tiles_retried": sum((ti.get("try_number") or 1) > 1 for ti in exports),
        "harvests_succeeded": sum(ti["state"] == "success" for ti in harvests),
        "files_harvested": len(harvested),
        "bytes_harvested": sum(p.stat().st_size for p in harvested),
        "airflow_cpu_seconds": run["airflow_cpu_seconds"],
    }


def _common(figures: dict[str, Any], stats: dict[str, Any]) -> dict[str, Any]:
    return {
        "ideal_seconds": figures["ideal_seconds"],
        "ee_operations": figures["ee_operations"],
        "ee_succeeded": figures["succeeded"],
        "duplicate_ee_tasks": figures["duplicate_ee_tasks"],
        "ee_idle_while_waiting": figures["ee_idle_while_waiting"],
        **per_export(stats, figures["succeeded"]),
        "drive_peak_bytes": stats["drive_peak_bytes"],
        "files_left_on_drive": stats["drive_files"],
        "bytes_left_on_drive": stats["drive_bytes"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task-seconds", type=float, default=20.0, help="D, the emulated EE task duration")
    parser.add_argument("--ee-concurrency", type=int, default=3, help="K, tasks EE runs at once")
    parser.add_argument(
        "--real-task-seconds", type=float, default=300.0, help="the real task duration D stands for (scales 60 s)"
    )
    parser.add_argument("--drive-quota-bytes", type=int, default=2_000_000)
    parser.add_argument("--only", choices=["loop", "dag"], default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="bench-airflow-"))
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    emulator_args = {
        "ee-concurrency": args.ee_concurrency,
        "task-seconds": args.task_seconds,
        "drive-quota-bytes": args.drive_quota_bytes,
    }
    work = Path(tempfile.mkdtemp(prefix="bench-b1-"))
    result: dict[str, Any] = {
        "benchmark": "B1 orchestration",
        "settings": {"tiles": 60, "K": args.ee_concurrency, "D_seconds": args.task_seconds,
                     "real_D_seconds": args.real_task_seconds, "max_tasks_or_pool": MAX_TASKS,
                     "drive_quota_bytes": args.drive_quota_bytes},
    }  # fmt: skip
    for name, fn in (("loop", run_loop), ("dag", run_dag)):
        if args.only in (None, name):
            figures = fn(args, emulator_args, work)
            per_tile = figures["bytes_harvested"] / max(figures["files_harvested"], 1)
            figures["makespan_over_ideal"] = round(figures["makespan_seconds"] / figures["ideal_seconds"], 3)
            figures["drive_peak_over_10_tiles"] = round(figures["drive_peak_bytes"] / (MAX_TASKS * per_tile), 2)
            result[name] = figures
            print(json.dumps({name: figures}, indent=2), flush=True)
    result["targets"] = {"dag makespan_over_ideal": "<= 1.10", "ee_idle_while_waiting": "<= 0.05",
                         "ee_requests_per_export": "<= 3", "drive_peak_over_10_tiles": "<= 1.2",
                         "files_left_on_drive": 0, "duplicate_ee_tasks": 0}  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "orchestration.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
