"""`make demo`: one tile exported end to end on the local emulator.

Starts ``gee-emulator`` as its own process, points an Airflow connection at it (as a user would
with ``AIRFLOW_CONN_...``), builds an image with the real ``ee`` client, submits it as an EE export
to Drive, waits for the task, downloads the GeoTIFF with size and md5 verified, deletes the Drive
copy only then, and writes ``demo-output/summary.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "demo-output"
BERLIN = [13.2134, 52.4152, 13.3019, 52.4873]


def main() -> int:
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="gee-demo-airflow-"))
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    OUT.mkdir(exist_ok=True)
    started = time.monotonic()
    emulator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_gee.emulator",
            "--port",
            "0",
            "--print-connection",
            "--project",
            "gee-demo-project",
            "--ee-concurrency",
            "3",
            "--task-seconds",
            "1",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = emulator.stdout.readline().strip().removeprefix("listening on ")
        os.environ["AIRFLOW_CONN_GEE_DEMO"] = emulator.stdout.readline().strip()
        print(f"emulator: {url}")
        return run(url, started)
    finally:
        emulator.terminate()
        emulator.wait(timeout=30)


def run(url: str, started: float) -> int:
    import ee
    import requests

    from airflow_provider_gee.hooks.drive import DriveHook
    from airflow_provider_gee.hooks.earth_engine import TERMINAL_STATES, EarthEngineHook

    hook = EarthEngineHook(gcp_conn_id="gee_demo")
    hook.initialize_ee()
    region = ee.Geometry.Rectangle(BERLIN)
    image = ee.Image.pixelLonLat().rename(["lon", "lat"])
    op = hook.start_export(
        image,
        kind="image",
        destination="drive",
        request_id="demo-tile-r0000c0000",
        description="demo-tile-r0000c0000",
        folder="gee_demo",
        fileNamePrefix="tile-r0000c0000",
        region=region,
        scale=30,
    )
    print(f"submitted {op['name']}")
    last = None
    while True:
        op = hook.get_operation(op["name"])
        state = op["metadata"]["state"]
        if state != last:
            print(f"  {state} progress={op['metadata'].get('progress', 0):.0%}")
            last = state
        if state in TERMINAL_STATES:
            break
        time.sleep(0.5)
    if state != "SUCCEEDED":
        print(f"export ended {state}: {op.get('error', {}).get('message')}")
        return 1

    drive = DriveHook(gcp_conn_id="gee_demo")
    folder_id = drive.resolve_folder("gee_demo")
    files = drive.list_folder(folder_id)
    manifest = []
    for f in files:
        target = OUT / f["name"]
        md5 = drive.download_verified(f, target)
        drive.delete_file(f["id"])  # only after the local copy is verified
        manifest.append({"name": f["name"], "path": str(target), "size": int(f["size"]), "md5": md5})
        print(f"harvested {f['name']} ({f['size']} bytes, md5 {md5}), deleted from Drive")

    stats = requests.get(f"{url}/_emulator/stats", timeout=10).json()
    summary = {
        "tiles": 1,
        "ee_operations": stats["operations"],
        "succeeded": stats["operations_by_state"].get("SUCCEEDED", 0),
        "failed": stats["operations_by_state"].get("FAILED", 0),
        "peak_in_flight": stats["peak_in_flight"],
        "files_harvested": len(manifest),
        "bytes_harvested": sum(m["size"] for m in manifest),
        "drive_peak_bytes": stats["drive_peak_bytes"],
        "drive_bytes_left": stats["drive_bytes"],
        "wall_seconds": round(time.monotonic() - started, 2),
        "files": manifest,
    }
    (OUT / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "files"}, indent=2))
    ok = summary["succeeded"] == summary["tiles"] and summary["drive_bytes_left"] == 0 and manifest
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
