"""The tile map in a real browser: the plugin's tab on the DAG run page, and its page, loaded by
Debian's Chromium (headless) from the real api-server during and after a run of the tiled export
example; what it draws is checked against the run's state in Airflow's REST API."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import pytest

from dev.airflow_stack import AirflowStack
from dev.browser import render
from dev.demo import ROOT, emulator_process

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

DAG_ID = "gee_tiled_image_export"
REGION = [13.1005, 52.3605, 13.1595, 52.3995]  # 3 x 2 cells of 0.02 degrees


class _Page(HTMLParser):
    """The drawn tiles (``data-tile`` -> ``data-state``), the legend's counts and the page's state."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tiles: dict[str, dict[str, str]] = {}
        self.legend: dict[str, int] = {}
        self.body: dict[str, str] = {}
        self.details_tile: str | None = None
        self.feed(html)
        self.details_text = re.sub(r"<[^>]+>", " ", html.split('id="details"', 1)[-1].split("</aside>", 1)[0])

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "path" and "data-tile" in a:
            self.tiles[a["data-tile"]] = {"state": a["data-state"], "split": a.get("data-split", "0")}
            if "data-progress" in a:
                self.tiles[a["data-tile"]]["progress"] = a["data-progress"]
        elif tag == "span" and "data-state" in a:
            self.legend[a["data-state"]] = int(a["data-count"])
        elif tag == "body":
            self.body = a
        elif tag == "aside" and a.get("id") == "details":
            self.details_tile = a.get("data-tile")


def test_the_tile_map_shows_the_runs_tiles_in_a_real_browser(tmp_path):
    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(ROOT / "example_dags" / f"{DAG_ID}.py", dags)
    adc_dir = Path(tempfile.mkdtemp(prefix="gee-adc-"))
    adc = adc_dir / "application_default_credentials.json"
    try:
        with emulator_process({"task-seconds": 15, "ee-concurrency": 2}, adc) as (_url, conn):
            env = {"AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": conn, "GOOGLE_APPLICATION_CREDENTIALS": str(adc)}
            with AirflowStack(tmp_path / "airflow", dags, env=env, pools={"gee_tasks": 2}) as stack:
                stack.wait_for_dag(DAG_ID)
                # the plugin's tab on the DAG run page, served by the api-server
                plugins = stack.api("GET", "plugins")["plugins"]
                views = [v for p in plugins if p["name"] == "gee_tile_map" for v in p["external_views"]]
                assert [(v["destination"], v["href"]) for v in views] == [
                    ("dag_run", "/gee-tile-map/?dag_id={DAG_ID}&run_id={RUN_ID}")
                ]
                conf = {"region": REGION, "cell_size": 0.02, "scale": 100, "output": str(tmp_path / "harvest"),
                        "report_dir": str(tmp_path / "report")}  # fmt: skip
                run_id = stack.trigger(DAG_ID, conf)
                # as Airflow's UI fills in the tab's href: each value URL-encoded
                page = f"{stack.url}/gee-tile-map/?dag_id={DAG_ID}&run_id={quote(run_id, safe='')}"

                def export_progress_logged() -> bool:
                    # an export waiting in EE whose trigger has logged EE's progress (what the page shows)
                    tis = stack.task_instances(DAG_ID, run_id)
                    for t in tis:
                        if t["task_id"] == "tile_pipeline.export" and t["state"] == "deferred":
                            log = stack.api("GET", f"{base}/logs/{t['try_number']}",
                                            params={"map_index": t["map_index"], "full_content": True})  # fmt: skip
                            if re.search(r"RUNNING \d+%", json.dumps(log)):
                                return True
                    return False

                base = f"dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/tile_pipeline.export"
                stack._wait(export_progress_logged, 300, "an export in EE to log its progress", 0.5)
                for _ in range(4):  # a loaded machine starts Chromium slowly: look again if EE moved on
                    during = _Page(render(page, wait_ms=3000))
                    if any(t["state"] == "in_ee" and "progress" in t for t in during.tiles.values()):
                        break
                after_during = stack.task_instances(DAG_ID, run_id)
                assert stack.wait_for_run(DAG_ID, run_id, timeout=600) == "success"
                shot = tmp_path / "tile_map.png"
                tis = stack.task_instances(DAG_ID, run_id)
                first = next(t["rendered_map_index"] for t in tis if t["task_id"] == "tile_pipeline.export")
                done = _Page(render(f"{page}&tile={first}", screenshot=shot))
    finally:
        shutil.rmtree(adc_dir, ignore_errors=True)

    # during the run: every tile drawn, none harvested that Airflow did not harvest, some in EE
    exports = {t["rendered_map_index"] for t in tis if t["task_id"] == "tile_pipeline.export"}
    assert len(exports) == 6 and set(during.tiles) == exports
    assert during.body["data-run-state"] == "running"
    harvested_after = {t["rendered_map_index"] for t in after_during
                       if t["task_id"] == "tile_pipeline.harvest" and t["state"] == "success"}  # fmt: skip
    assert {t for t, s in during.tiles.items() if s["state"] == "harvested"} <= harvested_after
    assert any(s["state"] in ("in_ee", "waiting", "exported") for s in during.tiles.values()), during.tiles
    # a tile in EE shows how far EE is, as its export's trigger logged it
    in_ee = [s for s in during.tiles.values() if s["state"] == "in_ee"]
    assert in_ee and all(0 <= int(s["progress"]) <= 100 for s in in_ee if "progress" in s)
    assert any("progress" in s for s in in_ee), during.tiles
    assert sum(during.legend[s] for s in during.legend if s != "split") == 6

    # after it: every tile harvested, as Airflow says; the legend counts them; the run is done
    assert {t: s["state"] for t, s in done.tiles.items()} == dict.fromkeys(exports, "harvested")
    assert done.legend["harvested"] == 6 and done.legend["failed"] == 0 and done.legend["split"] == 0
    assert done.body["data-run-state"] == "success" and done.body["data-loaded"] == "true"
    # a tile's details: its EE task, its links and its files
    assert done.details_tile == first
    assert "projects/" in done.details_text and "/operations/" in done.details_text
    assert re.search(r"Files\s+1 \([\d,]+ bytes\)", done.details_text), done.details_text
    assert shot.stat().st_size > 10_000  # a real picture (PNG), not an empty page
