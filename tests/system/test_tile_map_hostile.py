"""The tile map shows what other people wrote as text, and runs none of it.

Threat (docs/guarantees.md, "Who can do what"): a person who may trigger a DAG (and so set its
params), or write into the shared folder (and so name files), or make EE fail with a message of
their choosing, puts markup in those values; an admin opens the run's tile map. A DAG whose tasks
return such values (as the provider's operators would hand them over: tile ids, EE task names and
errors, a harvest destination from a param, file names, a link URL) runs on a real api-server,
and Debian's Chromium opens the page: every payload, if it ran, would mark the page's body.
"""

from __future__ import annotations

import re
import textwrap
from urllib.parse import quote

import pytest
import requests

from dev.airflow_stack import AirflowStack
from dev.browser import render

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

DAG_ID = "gee_hostile_values"
#: a payload per place a value is shown; each marks the body if it ever runs
PAYLOAD = "<img src=x onerror=\"document.body.dataset.pwned='{0}'\"><script>document.body.dataset.pwned='{0}'</script>"
HOSTILE_TILE = PAYLOAD.format("tile")

DAG = textwrap.dedent(
    f'''
    import pendulum
    from airflow.sdk import DAG, BaseOperator

    from airflow_provider_gee.links.drive import DriveFolderLink

    PAYLOAD = {PAYLOAD!r}


    class GridTilesOperator(BaseOperator):  # the page finds the tiles by the tiling operator's name
        def execute(self, context):
            return [{{"tile_id": PAYLOAD.format("tile"), "bbox": [13.10, 52.36, 13.12, 52.38]}},
                    {{"tile_id": "r0001c0002", "bbox": [13.12, 52.36, 13.14, 52.38]}}]


    class GeeExportOperator(BaseOperator):
        operator_extra_links = (DriveFolderLink(),)

        def __init__(self, tile, **kwargs):
            super().__init__(**kwargs)
            self.tile = tile

        def execute(self, context):
            DriveFolderLink.persist(context, "javascript:document.body.dataset.pwned='link'")
            return {{"tile_id": self.tile["tile_id"], "operation": PAYLOAD.format("operation"),
                    "error": PAYLOAD.format("ee error"), "eecu_seconds": 1.5,
                    "parts": [{{"bbox": [13.10, 52.36, 13.11, 52.37]}}],
                    "split": {{"reason": PAYLOAD.format("reason")}}}}


    class DriveHarvestOperator(BaseOperator):
        template_fields = ("destination",)

        def __init__(self, export_result, destination, **kwargs):
            super().__init__(**kwargs)
            self.export_result = export_result
            self.destination = destination

        def execute(self, context):
            if self.export_result["tile_id"] == "r0001c0002":
                raise RuntimeError(PAYLOAD.format("task error"))
            return {{"destination": self.destination, "file_count": 1, "bytes": 3,
                    "files": [{{"path": "/data/" + PAYLOAD.format("file name").split("<script>")[0] + ".tif"}}]}}


    with DAG("{DAG_ID}", schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False,
             params={{"destination": PAYLOAD.format("destination")}}):
        tiles = GridTilesOperator(task_id="tiles")
        exports = GeeExportOperator.partial(
            task_id="export", map_index_template="{{{{ task.tile['tile_id'] }}}}"
        ).expand(tile=tiles.output)
        DriveHarvestOperator.partial(
            task_id="harvest", retries=0, destination="{{{{ params.destination }}}}",
            map_index_template="{{{{ task.export_result['tile_id'] }}}}",
        ).expand(
            export_result=exports.output
        )
    '''
)


def details_text(dom: str) -> str:
    return dom.split('id="details"', 1)[-1].split("</aside>", 1)[0]


def test_hostile_values_show_as_text_and_nothing_runs(tmp_path):
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / f"{DAG_ID}.py").write_text(DAG)
    with AirflowStack(tmp_path / "airflow", dags, pools={}) as stack:
        stack.wait_for_dag(DAG_ID)
        run_id = stack.trigger(DAG_ID, {})
        assert stack.wait_for_run(DAG_ID, run_id, timeout=300) == "failed"  # one harvest failed, as planned
        page = f"{stack.url}/gee-tile-map/?dag_id={DAG_ID}&run_id={quote(run_id, safe='')}"
        served = requests.get(page, timeout=30)
        hostile = render(f"{page}&tile={quote(HOSTILE_TILE, safe='')}", wait_ms=8000)
        failed = render(f"{page}&tile=r0001c0002", wait_ms=8000)
        # ids of a DAG and run from the address bar (anyone can send an admin such a link)
        forged = render(
            f"{stack.url}/gee-tile-map/?dag_id={quote(PAYLOAD.format('dag id'), safe='')}"
            f"&run_id={quote(PAYLOAD.format('run id'), safe='')}",
            wait_ms=4000,
        )
        script = requests.get(f"{stack.url}/gee-tile-map/tile_map.js", timeout=30)

    # the page forbids inline script and foreign sources, and is served as what it is
    policy = served.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "default-src 'none'" in policy
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    assert script.status_code == 200 and script.headers["Content-Type"].startswith("text/javascript")
    assert "<script>" not in served.text.split("</head>", 1)[1].replace('<script src="tile_map.js" defer></script>', "")

    for dom in (hostile, failed, forged):
        assert "data-pwned" not in dom, re.findall(r'data-pwned="[^"]*"', dom)
        assert "<img" not in dom and 'href="javascript:' not in dom
    # everything is there, as text
    assert hostile.count('data-tile="&lt;img src=x') >= 1  # the tile is drawn under its (hostile) id
    shown = details_text(hostile)
    for place in ("tile", "operation", "ee error", "reason", "destination", "file name"):
        assert f"document.body.dataset.pwned='{place}'" in shown, place
    assert "javascript:document.body.dataset.pwned='link' (not opened: not an https: link)" in shown
    assert "harvest is failed" in details_text(failed) and 'target="_top">its log</a>' in details_text(failed)
    assert "dataset.pwned='dag id'" in forged and "dataset.pwned='run id'" in forged  # in the error text
