"""Checks run *inside* a compatibility virtualenv (a supported Airflow plus the built wheel, nothing
of this repository installed) by ``dev/compat_check.py``. Prints one JSON line of findings.

1. ``import airflow_provider_gee`` and every operator module load none of psutil, matplotlib,
   rasterio (optional features stay optional).
2. Every example DAG parses (``DagBag``) with no extra installed.
3. A retry after a crash between submitting and recording the EE task re-attaches to it instead of
   submitting another (the retry is the real operator's ``execute`` with ``try_number`` 2; EE is the
   emulator, reached through the real connection and hooks).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

OPTIONAL = ("psutil", "matplotlib", "rasterio")
MODULES = (
    "airflow_provider_gee",
    "airflow_provider_gee.operators.export",
    "airflow_provider_gee.operators.harvest",
    "airflow_provider_gee.operators.assets",
    "airflow_provider_gee.operators.stitch",
    "airflow_provider_gee.operators.tiling",
    "airflow_provider_gee.sensors.task",
    "airflow_provider_gee.triggers.task",
    "airflow_provider_gee.hooks.earth_engine",
    "airflow_provider_gee.hooks.drive",
)


def optional_modules_loaded() -> list[str]:
    """Optional libraries loaded by ``import airflow_provider_gee`` (none, and not Airflow either),
    and by importing every module of ours (no matplotlib or rasterio; Airflow itself loads psutil)."""
    import importlib

    importlib.import_module("airflow_provider_gee")
    loaded = sorted(m for m in (*OPTIONAL, "airflow") if m in sys.modules)
    for name in MODULES:
        importlib.import_module(name)
    return loaded + sorted(m for m in OPTIONAL if m != "psutil" and m in sys.modules)


def example_dag_errors(folder: str) -> dict[str, str]:
    try:
        from airflow.dag_processing.dagbag import DagBag  # Airflow 3.2+
    except ImportError:
        from airflow.models.dagbag import DagBag  # Airflow 3.1
    bag = DagBag(dag_folder=folder)  # examples off: AIRFLOW__CORE__LOAD_EXAMPLES=False
    if not bag.dags and not bag.import_errors:
        return {folder: "no DAG found"}
    return {path: err.strip().splitlines()[-1] for path, err in bag.import_errors.items()}


def retry_reattaches() -> dict[str, object]:
    """Try 1 submits and dies before Airflow records anything; try 2 must find that EE task."""
    from airflow_provider_gee.operators.export import GeeExportOperator

    def context(op: GeeExportOperator, try_number: int) -> dict:
        ti = SimpleNamespace(dag_id="compat", task_id="export", run_id="manual__1", map_index=0, try_number=try_number)
        run = SimpleNamespace(start_date=datetime.now(UTC) - timedelta(minutes=1))
        return {"ti": ti, "dag_run": run, "task": op, "data_interval_start": None}

    def operator() -> GeeExportOperator:
        return GeeExportOperator(
            task_id="export", tile=_TILE, build=_build, folder="compat_retry", scale=500, deferrable=False,
            poll_interval=0.2,
        )  # fmt: skip

    first = operator()
    first.validate()
    submitted = first.submit_job(context(first, 1))  # ... and the worker dies here
    second = operator()
    result = second.execute(context(second, 2))
    listed = [
        op for op in second.hook.list_operations() if op.get("metadata", {}).get("description") == result["description"]
    ]
    return {"submitted": submitted["operation"], "retry_result": result["operation"], "operations": len(listed)}


_TILE = {
    "tile_id": "r0c0",
    "geometry": {
        "type": "Polygon",
        "coordinates": [[[13.2, 52.4], [13.22, 52.4], [13.22, 52.42], [13.2, 52.42], [13.2, 52.4]]],
    },
}


def _build(tile: dict, context: dict):
    import ee

    return ee.Image.constant(1)


def main() -> int:
    findings: dict[str, object] = {"optional_modules_loaded": optional_modules_loaded()}  # first: nothing loaded yet
    findings["example_dag_errors"] = example_dag_errors(sys.argv[1])
    from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_3_PLUS

    # On 3.3+ the task state store keeps the operation (tested on the real scheduler elsewhere);
    # before 3.3 the retry's own lookup does, and that is what this proves.
    if not AIRFLOW_V_3_3_PLUS:
        findings["retry"] = retry_reattaches()
    print(json.dumps(findings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
