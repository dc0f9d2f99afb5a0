"""B2: 1,000 EE operations waited on in one triggerer process.

Runs 1,000 ``GeeTaskTrigger`` instances in one event loop against the emulator (all operations
PENDING, so every trigger keeps waiting) for a number of poll intervals, and reports EE requests
per interval and CPU seconds, side by side with the naive baseline measured in the same run: one
GET per operation per interval from the same loop. Prints JSON (also written to
``benchmarks/results/triggers.json``). Run: ``.venv/bin/python benchmarks/triggers.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

N_OPERATIONS = 1000
INTERVAL = 1.0
INTERVALS = 5


def main() -> int:
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="bench-airflow-"))
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    from gee_emulator import EmulatorConfig, EmulatorServer

    with EmulatorServer(EmulatorConfig(project="gee-bench-project", ee_concurrency=0)) as emu:
        os.environ["AIRFLOW_CONN_BENCH"] = json.dumps(emu.connection())
        from airflow_provider_gee.hooks.earth_engine import EarthEngineAsyncHook, EarthEngineHook
        from airflow_provider_gee.triggers.task import GeeTaskTrigger, OperationPoller

        hook = EarthEngineHook(gcp_conn_id="bench")
        hook.initialize_ee()
        import ee

        region = ee.Geometry.Rectangle([13.2, 52.4, 13.3, 52.5])
        names = [
            hook.start_export(
                ee.Image.constant(i),
                kind="image",
                destination="drive",
                request_id=f"b-{i}",
                description=f"b-{i}",
                region=region,
                scale=5000,
            )["name"]
            for i in range(N_OPERATIONS)
        ]

        async def shared() -> tuple[int, int, float]:
            triggers = [GeeTaskTrigger([n], gcp_conn_id="bench", poll_interval=INTERVAL) for n in names]
            tasks = [asyncio.create_task(anext(t.run())) for t in triggers]
            cpu0 = time.process_time()
            await asyncio.sleep(INTERVAL * INTERVALS + 0.1)
            cpu = time.process_time() - cpu0
            poller = OperationPoller.for_connection("bench", None, INTERVAL)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            return poller.requests, poller.polls, cpu

        async def naive() -> tuple[int, int, float]:
            async_hook = EarthEngineAsyncHook(gcp_conn_id="bench")
            requests = polls = 0
            cpu0 = time.process_time()
            async with aiohttp.ClientSession() as session:
                deadline = time.monotonic() + INTERVAL * INTERVALS
                while time.monotonic() < deadline:
                    started = time.monotonic()
                    await asyncio.gather(*(async_hook.request(session, "GET", n) for n in names))
                    requests += len(names)
                    polls += 1
                    await asyncio.sleep(max(0.0, INTERVAL - (time.monotonic() - started)))
            return requests, polls, time.process_time() - cpu0

        s_req, s_polls, s_cpu = asyncio.run(shared())
        n_req, n_polls, n_cpu = asyncio.run(naive())
    report = {
        "benchmark": "B2 trigger scaling",
        "waiting_operations": N_OPERATIONS,
        "poll_interval_s": INTERVAL,
        "shared_poll": {
            "polls": s_polls,
            "requests": s_req,
            "requests_per_interval": round(s_req / s_polls, 2),
            "cpu_seconds_per_interval": round(s_cpu / INTERVALS, 3),
        },
        "one_get_per_operation": {
            "polls": n_polls,
            "requests": n_req,
            "requests_per_interval": round(n_req / n_polls, 2),
            "cpu_seconds_per_interval": round(n_cpu / max(n_polls, 1), 3),
        },
        "target_requests_per_interval": "<= 5",
        "note": "CPU seconds include the in-process emulator answering the requests",
    }
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "triggers.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
