"""The DAG of the compatibility check (``make compat``): a few tiles exported to Drive and harvested,
run with ``dag.test()`` inside a virtualenv that holds only a supported Airflow and the built wheel.

``python compat_dag.py OUT_DIR`` runs it and prints one JSON line: the run's state and what was
harvested. Uses only the installed provider (no extras) and the connection ``google_cloud_default``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from airflow.sdk import DAG

from airflow_provider_gee.operators.export import GeeExportOperator
from airflow_provider_gee.operators.harvest import GeeHarvestOperator
from airflow_provider_gee.operators.tiling import GridTilesOperator

OUT = sys.argv[1] if len(sys.argv) > 1 and __name__ == "__main__" else "/tmp/gee-compat"


def build(tile: dict, context: dict):
    import ee

    return ee.Image.pixelLonLat().select("longitude")


with DAG(dag_id="gee_compat_check", schedule=None, catchup=False) as dag:
    tiles = GridTilesOperator(task_id="tiles", region=[13.20, 52.40, 13.24, 52.42], cell_size=0.02)

    exported = GeeExportOperator.partial(
        task_id="export", build=build, folder="gee_compat", file_name_prefix="{tile_id}", scale=200,
        poll_interval=0.5, deferrable=True,
    ).expand(tile=tiles.output)  # fmt: skip
    GeeHarvestOperator.partial(task_id="harvest", destination=OUT).expand(export_result=exported.output)


if __name__ == "__main__":
    run = dag.test()
    files = sorted(p.name for p in Path(OUT).glob("*.tif"))
    print(json.dumps({"state": str(getattr(run.state, "value", run.state)), "files": files}))
