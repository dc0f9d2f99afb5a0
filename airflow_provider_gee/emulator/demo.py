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
import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from airflow_provider_gee.emulator.airflow_stack import AirflowStack

ROOT = Path(__file__).resolve().parents[2]
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
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    dags_folder = out / "dags"  # this example only: the scheduled examples would add runs of their own
    dags_folder.mkdir()
    shutil.copy(example, dags_folder)
    emulator = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_gee.emulator", "--port", "0", "--print-connection",
         "--project", "gee-demo-project", "--ee-concurrency", str(ee_concurrency),
         "--task-seconds", str(task_seconds), "--drive-quota-bytes", str(drive_quota_bytes)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = emulator.stdout.readline().strip().removeprefix("listening on ")
        conn = emulator.stdout.readline().strip()
        print(f"emulator at {url} (EE runs {ee_concurrency} at once, Drive quota {drive_quota_bytes:,} bytes)")
        env = {"AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": conn}
        with AirflowStack(out / "airflow", dags_folder, env=env, pools={"gee_tasks": 10}) as stack:
            print(f"airflow api-server at {stack.url}; scheduler, dag-processor and triggerer started")
            stack.wait_for_dag("gee_tiled_image_export")
            conf = {"region": region, "cell_size": cell_size, "destination": str(out / "harvest"),
                    "report_dir": str(out / "report"), "folder": "gee_demo"}  # fmt: skip
            run_id = stack.trigger("gee_tiled_image_export", conf)
            print(f"triggered {run_id}; waiting ...")
            state = stack.wait_for_run("gee_tiled_image_export", run_id, timeout=1800)
            tis = stack.task_instances("gee_tiled_image_export", run_id)
        stats = requests.get(f"{url}/_emulator/stats", timeout=30).json()
    finally:
        emulator.terminate()
        emulator.wait(timeout=30)
    return _summarize(out, state, tis, stats, time.monotonic() - started)


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
        "manifest": str(reports[0]) if reports else None,
        "tiles_png": str(out / "tiles.png") if reports else None,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


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
    )
    print("demo OK" if ok else "demo FAILED: see the summary above and demo-output/airflow/*.log")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
