"""``make demo``: the tiled image export example DAG, end to end, on a real local Airflow and the
emulator.

Two runs, one per identity, as on Google (EE writes Drive exports as the caller; service accounts
have no Drive storage):

1. Drive, with a person's credentials (the file ``earthengine authenticate`` writes, named by the
   connection's ``ee_credentials`` extra): ``gee-emulator`` (EE runs 3
   tasks at once, 2-second tasks, a Drive quota of 450 kB that the run's ~620 kB of GeoTIFFs would
   exceed without harvesting);
2. Cloud Storage, with the service-account key in the connection, into a bucket of
   gcp-storage-emulator.

Each: a private AIRFLOW_HOME with the real api-server, scheduler, dag-processor and triggerer, the
``gee_tasks`` pool (10 slots, include_deferred) and the connection; triggers
``gee_tiled_image_export`` over 40 tiles, waits, checks every harvested file's md5, stops everything.
Writes ``summary.json`` (the Drive run's fields, and a ``gcs`` block with the same fields),
``tiles.png`` (the report's map) and screenshots of the tile map in Airflow's UI (the plugin's page
in headless Chromium): ``tile_map_running.png`` while tiles are harvested, ``tile_map.png`` at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from dev.airflow_stack import LOCAL_SETTINGS, AirflowStack, free_port

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
    gcs: bool = True,
) -> dict[str, Any]:
    """Run the example DAG to Drive (a person's credentials) and, with ``gcs``, to Cloud Storage
    (a service account); return the summary (also written to ``out/summary.json``)."""
    started = time.monotonic()
    conf = {"region": region, "cell_size": cell_size, "output": str(out / "harvest"),
            "report_dir": str(out / "report"), "folder": "gee_demo", "destination": "drive"}  # fmt: skip
    emulator_args = {"ee-concurrency": ee_concurrency, "task-seconds": task_seconds}
    run = run_example(
        out, example, "gee_tiled_image_export", conf,
        emulator_args={**emulator_args, "drive-quota-bytes": drive_quota_bytes}, identity="user", tile_map=out,
    )  # fmt: skip
    summary = _summarize(out, run["state"], run["task_instances"], run["stats"], time.monotonic() - started)
    summary["tile_map"] = [str(p) for p in sorted(out.glob("tile_map*.png"))]
    if gcs:
        summary["gcs"] = run_gcs_demo(out / "gcs", example, conf, emulator_args)
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def run_gcs_demo(out: Path, example: Path, conf: dict[str, Any], emulator_args: dict[str, Any]) -> dict[str, Any]:
    """The same run exported to Cloud Storage by the service account (gcp-storage-emulator)."""
    from gcp_storage_emulator.server import create_server
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    url = f"http://127.0.0.1:{port}"
    try:
        bucket = "gee-demo-exports"
        client = storage.Client(
            project="gee-demo-project", credentials=AnonymousCredentials(), client_options={"api_endpoint": url}
        )
        client.create_bucket(bucket)
        started = time.monotonic()
        gcs_conf = {**conf, "destination": "gcs", "bucket": bucket, "output": str(out / "harvest"),
                    "report_dir": str(out / "report")}  # fmt: skip
        run = run_example(
            out, example, "gee_tiled_image_export", gcs_conf, emulator_args={**emulator_args, "gcs-url": url},
            identity="service_account", env={"STORAGE_EMULATOR_HOST": url},
        )  # fmt: skip
        summary = _summarize(out, run["state"], run["task_instances"], run["stats"], time.monotonic() - started)
        summary["bucket_objects_left"] = len(list(client.list_blobs(bucket)))
        return summary
    finally:
        server.stop()


@contextlib.contextmanager
def emulator_process(
    emulator_args: dict[str, Any], user_credentials: Path | None = None, ee_credentials: Path | None = None
) -> Iterator[tuple[str, str]]:
    """``gee-emulator`` in its own process (as in production, the service is not in the client's
    process); yields its URL and an Airflow connection (JSON) for it.

    :param emulator_args: options without the dashes, e.g. ``{"task-seconds": 2}``.
    :param user_credentials: write a person's ``authorized_user`` file here (a login with an OAuth
        client of their own, so with the Drive scope) and yield a connection without a key (the
        hooks then use it through ``GOOGLE_APPLICATION_CREDENTIALS``);
    :param ee_credentials: or write the person's EE credentials file here (``earthengine
        authenticate``'s) and yield a connection that names it (extra ``ee_credentials``).
        Without either, the connection carries the emulator's service-account key.
    """
    options = [part for key, value in emulator_args.items() for part in (f"--{key}", str(value))]
    if user_credentials is not None:
        options += ["--user", "--write-user-credentials", str(user_credentials), "--oauth-client", "own"]
    if ee_credentials is not None:
        options += ["--user", "--write-ee-credentials", str(ee_credentials)]
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
    identity: str = "user",
    deployment: str = "local",
    tile_map: Path | None = None,
    local_settings: Path | None = LOCAL_SETTINGS,
) -> dict[str, Any]:
    """Run one DAG file once on a fresh emulator and a fresh local Airflow; return what happened.

    :param out: working directory (emptied): ``dags/`` with only this file, ``airflow/`` (home, logs).
    :param emulator_args: ``gee-emulator`` options without dashes, e.g. ``{"task-seconds": 2}``.
    :param pools: pools to create (default ``{"gee_tasks": 10}``), all with include_deferred.
    :param identity: ``"user"``: a person's credentials (the EE credentials file of ``earthengine
        authenticate``, in the connection's ``ee_credentials`` extra; what Drive exports need), or
        ``"service_account"``: the emulator's service-account key in the connection (no Drive
        storage, as on Google: export to Cloud Storage).
    :param deployment: ``"local"``: LocalExecutor on SQLite, one of each process; ``"celery"``:
        the recommended deployment (:meth:`AirflowStack.celery`) on this machine's PostgreSQL and
        Redis, in a database and a Redis index of the run's own.
    :param tile_map: a directory: screenshots of the run's tile map (the plugin's page, in headless
        Chromium) while tiles are being harvested (``tile_map_running.png``) and at the end
        (``tile_map.png``).
    :param local_settings: Airflow's ``airflow_local_settings.py`` (see :class:`AirflowStack`);
        ``None`` for none (a benchmark's baseline without preloading).
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
    # a credential: in a private directory outside the run's files, removed afterwards
    adc_dir = Path(tempfile.mkdtemp(prefix="gee-adc-"))
    ee_file = adc_dir / "credentials" if identity == "user" else None
    try:
        with emulator_process(emulator_args, ee_credentials=ee_file) as (url, conn):
            stack_env = {"AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": conn, **(env or {})}
            with airflow_stack(out / "airflow", dags_folder, stack_env, pools, deployment, local_settings) as stack:
                print(f"airflow api-server at {stack.url}; {', '.join(stack.procs)} started", flush=True)
                stack.wait_for_dag(dag_id)
                cpu_before = stack.cpu_seconds_by_process()
                run_id = stack.trigger(dag_id, conf)
                print(f"triggered {run_id}; waiting ...", flush=True)
                if tile_map is not None:
                    _tile_map_while_running(stack, dag_id, run_id, tile_map / "tile_map_running.png")
                state = stack.wait_for_run(dag_id, run_id, timeout=timeout)
                if tile_map is not None:
                    _tile_map_shot(stack, dag_id, run_id, tile_map / "tile_map.png")
                cpu = {k: v - cpu_before.get(k, 0.0) for k, v in stack.cpu_seconds_by_process().items()}
                dag_run = stack.api("GET", f"dags/{dag_id}/dagRuns/{run_id}")
                tis = stack.task_instances(dag_id, run_id)
            stats = requests.get(f"{url}/_emulator/stats", timeout=30).json()
            operations = requests.get(f"{url}/_emulator/operations", timeout=60).json()["operations"]
    finally:
        shutil.rmtree(adc_dir, ignore_errors=True)
    return {"state": state, "task_instances": tis, "dag_run": dag_run, "stats": stats, "operations": operations,
            "airflow_cpu_seconds": round(sum(cpu.values()), 1),
            "airflow_cpu_seconds_by_process": {k: round(v, 1) for k, v in sorted(cpu.items())}}  # fmt: skip


def _tile_map_shot(stack: AirflowStack, dag_id: str, run_id: str, path: Path) -> None:
    """A screenshot of the run's tile map, as its tab in Airflow's UI shows it."""
    from urllib.parse import quote

    from dev.browser import render

    render(f"{stack.url}/gee-tile-map/?dag_id={quote(dag_id)}&run_id={quote(run_id, safe='')}", screenshot=path)
    print(f"tile map: {path}", flush=True)


def _tile_map_while_running(stack: AirflowStack, dag_id: str, run_id: str, path: Path) -> None:
    """Screenshot the tile map once a third of the tiles are harvested (the map filling in); not
    at all if the run ends first."""
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        if stack.api("GET", f"dags/{dag_id}/dagRuns/{run_id}")["state"] in ("success", "failed"):
            return
        tis = stack.task_instances(dag_id, run_id)
        harvests = [t for t in tis if t["task_id"].endswith("harvest")]
        if harvests and sum(t["state"] == "success" for t in harvests) * 3 >= len(harvests):
            _tile_map_shot(stack, dag_id, run_id, path)
            return
        time.sleep(2)


@contextlib.contextmanager
def airflow_stack(
    home: Path,
    dags_folder: Path,
    env: dict[str, str],
    pools: dict[str, int] | None,
    deployment: str,
    local_settings: Path | None = LOCAL_SETTINGS,
) -> Iterator[AirflowStack]:
    """A started :class:`AirflowStack` of the given ``deployment`` (see :func:`run_example`)."""
    if deployment == "local":
        with AirflowStack(home, dags_folder, env=env, pools=pools, local_settings=local_settings) as stack:
            yield stack
        return
    if deployment != "celery":
        raise ValueError(f"deployment={deployment!r}: use 'local' or 'celery'.")
    from dev.deployment import ensure_services, postgres_database, redis_database

    ensure_services()
    with postgres_database() as database_url, redis_database() as broker_url:
        stack = AirflowStack.celery(home, dags_folder, database_url=database_url, broker_url=broker_url, env=env,
                                    pools=pools, local_settings=local_settings)  # fmt: skip
        with stack:
            yield stack


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
    gcs = summary["gcs"]
    ok = all(
        run["succeeded"] == run["tiles"] >= 40
        and run["peak_in_flight"] <= 10
        and run["md5_mismatches"] == 0
        and run["files_harvested"] >= run["tiles"]
        and (run["mosaic"] or {}).get("layout") == "COG"
        for run in (summary, gcs)
    ) and (summary["drive_bytes_left"], gcs["bucket_objects_left"]) == (0, 0)
    print("demo OK" if ok else "demo FAILED: see the summary above and demo-output/airflow/*.log")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
