"""Two runs of the tiled example at once, on the real scheduler, to Drive and to Cloud Storage.

The flagship example (``example_dags/gee_tiled_image_export.py``) exports every tile with
``file_name_prefix="{tile_id}"`` into one Drive folder (or bucket) that every run shares. Four runs
are triggered together, years 2022 and 2023 to Drive and to Cloud Storage: each run's mosaic must
hold exactly its own year, and nothing may be left on Drive or in the bucket. The example runs as
it is but for its per-tile computation, which here is a constant image of the run's ``year`` param
(so that a pixel tells which run wrote it); everything that names, harvests and stitches the files
is the example's own.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
import requests

from dev.airflow_stack import free_port
from dev.demo import ROOT, airflow_stack, emulator_process

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLE = ROOT / "example_dags" / "gee_tiled_image_export.py"
BUILD = "def build(tile: dict, context: dict):\n"


def constant_year_example(folder: Path) -> Path:
    """The example with ``build`` replaced by a constant image of the run's year."""
    text = EXAMPLE.read_text()
    assert text.count(BUILD) == 1, "the example's build() changed: update this test"
    text = text.replace(
        BUILD,
        BUILD
        + "    import ee\n\n"
        + '    return ee.Image.constant(int(context["params"]["year"])).rename("year").toFloat()\n\n\n'
        + "def _example_build(tile: dict, context: dict):\n",
    )
    path = folder / EXAMPLE.name
    path.write_text(text)
    return path


def mosaic_values(path: Path) -> set[float]:
    import numpy as np
    import rasterio

    with rasterio.open(path) as src:
        data = src.read(1, masked=True)
        return {float(v) for v in np.unique(data.compressed()) if not np.isnan(v)}


def test_four_runs_at_once_to_drive_and_cloud_storage_never_mix(tmp_path):
    from gcp_storage_emulator.server import create_server
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    dags = tmp_path / "dags"
    dags.mkdir()
    constant_year_example(dags)
    port = free_port()
    gcs = create_server("127.0.0.1", port, in_memory=True)
    gcs.start()
    gcs_url = f"http://127.0.0.1:{port}"
    adc_dir = Path(tempfile.mkdtemp(prefix="gee-adc-"))
    adc = adc_dir / "application_default_credentials.json"
    try:
        anonymous = AnonymousCredentials()
        client = storage.Client(project="p", credentials=anonymous, client_options={"api_endpoint": gcs_url})
        client.create_bucket("shared-exports")
        emulator_args = {"ee-concurrency": 4, "task-seconds": 1.0, "gcs-url": gcs_url}
        with emulator_process(emulator_args, adc) as (url, conn):
            env = {"AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": conn, "GOOGLE_APPLICATION_CREDENTIALS": str(adc),
                   "STORAGE_EMULATOR_HOST": gcs_url}  # fmt: skip
            with airflow_stack(tmp_path / "airflow", dags, env, None, "local") as stack:
                stack.wait_for_dag("gee_tiled_image_export")
                runs = {}
                for destination in ("drive", "gcs"):
                    for year in (2022, 2023):
                        conf = {"year": year, "destination": destination, "cell_size": 0.045, "cog": False,
                                "folder": "shared_exports", "bucket": "shared-exports",
                                "output": str(tmp_path / "out"), "report_dir": str(tmp_path / "report")}  # fmt: skip
                        runs[(destination, year)] = stack.trigger("gee_tiled_image_export", conf)
                states = {k: stack.wait_for_run("gee_tiled_image_export", r, timeout=900) for k, r in runs.items()}
            stats = requests.get(f"{url}/_emulator/stats", timeout=30).json()
        assert states == {k: "success" for k in runs}, states
        assert stats["drive_files"] == 0 and list(client.list_blobs("shared-exports")) == []
        tiles_per_run = stats["operations"] // 4
        assert tiles_per_run >= 4 and stats["operations_by_state"] == {"SUCCEEDED": 4 * tiles_per_run}
        for (destination, year), run_id in runs.items():
            run_dir = tmp_path / "out" / run_id.replace(":", "_").replace("+", "_")
            tifs = sorted(p for p in run_dir.glob("*.tif"))
            assert len(tifs) == tiles_per_run, (destination, year, tifs)  # its own tiles' files, no other run's
            vrt = run_dir / "mosaic" / "mosaic.vrt"
            assert mosaic_values(vrt) == {float(year)}, (destination, year)
    finally:
        gcs.stop()
        shutil.rmtree(adc_dir, ignore_errors=True)
