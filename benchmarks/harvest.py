"""B3: harvest throughput and memory, side by side with a plain streaming HTTP GET of the same bytes.

Starts ``gee-emulator`` in its own process, seeds one 1 GiB file and 100 files of 10 MB, then in
fresh worker processes (so memory figures are the worker's own) measures:

* ``raw``: ``requests`` streaming GET of each file, md5 computed, written to disk;
* ``harvest``: ``GeeHarvestOperator`` (ranged chunks, md5 + size verified, atomic rename).

Prints JSON (also written to ``benchmarks/results/harvest.json``): MB/s of each, their ratio
(target >= 0.7) and peak RSS above the worker's baseline after imports (target < 100 MB).
Run: ``.venv/bin/python benchmarks/harvest.py [--big-mib 1024] [--small 100]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests


def rss_kib() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def worker(mode: str, url: str, folder: str, dest: str) -> None:
    """Runs in a fresh process; prints one JSON line."""
    if mode == "harvest":
        from airflow_provider_gee.operators.harvest import GeeHarvestOperator
    baseline = rss_kib()
    start = time.perf_counter()
    if mode == "raw":
        files = requests.get(f"{url}/drive/v3/files", params={"q": "trashed = false"}, timeout=60).json()["files"]
        files = [f for f in files if f.get("mimeType") != "application/vnd.google-apps.folder"]
        total = 0
        for f in files:
            digest = hashlib.md5()
            with requests.get(
                f"{url}/drive/v3/files/{f['id']}", params={"alt": "media"}, stream=True, timeout=600
            ) as r:
                r.raise_for_status()
                with open(Path(dest) / f["name"], "wb") as out:
                    for chunk in r.iter_content(8 << 20):
                        digest.update(chunk)
                        out.write(chunk)
                        total += len(chunk)
            assert digest.hexdigest() == f["md5Checksum"]
    else:
        manifest = GeeHarvestOperator(
            task_id="bench", destination=dest, folder=folder, delete_after=False, gcp_conn_id="bench"
        ).execute({})
        total = manifest["bytes"]
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"seconds": seconds, "bytes": total, "baseline_kib": baseline, "peak_kib": peak}))


def run_worker(mode: str, url: str, folder: str, env: dict[str, str]) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"bench-{mode}-") as dest:
        out = subprocess.run(
            [sys.executable, __file__, "--worker", mode, url, folder, dest],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["mb_per_s"] = result["bytes"] / 1e6 / result["seconds"]
    result["peak_above_baseline_mb"] = (result["peak_kib"] - result["baseline_kib"]) / 1024
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--small-mb", type=int, default=10)
    parser.add_argument("--worker", nargs=4)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return 0
    home = tempfile.mkdtemp(prefix="bench-airflow-")
    env = {**os.environ, "AIRFLOW_HOME": home, "NO_PROXY": "127.0.0.1,localhost"}
    emu = subprocess.Popen(
        [sys.executable, "-m", "gee_emulator", "--port", "0", "--print-connection"],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        url = emu.stdout.readline().strip().removeprefix("listening on ")
        env["AIRFLOW_CONN_BENCH"] = emu.stdout.readline().strip()
        results = {}
        for label, folder, count, size in (
            ("one_big_file", "big", 1, args.big_mib << 20),
            ("many_small_files", "small", args.small, args.small_mb * 1_000_000),
        ):
            for i in range(count):
                requests.post(f"{url}/_emulator/drive/files", json={"folder": folder, "name": f"f{i:03d}.bin",
                                                                    "size": size, "seed": i}, timeout=600)  # fmt: skip
            raw = run_worker("raw", url, folder, env)
            ours = run_worker("harvest", url, folder, env)
            results[label] = {
                "files": count,
                "bytes": count * size,
                "raw_get_mb_per_s": round(raw["mb_per_s"], 1),
                "harvest_mb_per_s": round(ours["mb_per_s"], 1),
                "ratio": round(ours["mb_per_s"] / raw["mb_per_s"], 2),
                "raw_peak_rss_above_baseline_mb": round(raw["peak_above_baseline_mb"], 1),
                "harvest_peak_rss_above_baseline_mb": round(ours["peak_above_baseline_mb"], 1),
            }
            requests.post(f"{url}/_emulator/reset", timeout=60)
        report = {"benchmark": "B3 harvest", "targets": {"ratio": ">= 0.7", "rss_mb": "< 100"}, **results}
        out = Path(__file__).parent / "results"
        out.mkdir(exist_ok=True)
        (out / "harvest.json").write_text(json.dumps(report, indent=2))
        print(json.dumps(report, indent=2))
    finally:
        emu.terminate()
        emu.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
