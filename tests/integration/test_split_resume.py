"""Adaptive splitting on the real scheduler, triggerer and pool: tiles too big for EE are exported
as parts, one at a time per pool slot, deferred parts coming back through the triggerer's events;
an export waiting in its worker is SIGKILLed while a part of its tile runs, and its retry goes on
with that part: no EE task is submitted twice, every part's file is harvested, Drive ends empty.
The OpenLineage provider's listener (file transport) records what each export and harvest read
and wrote: the EE collections, the Drive folder and prefixes, the local destination."""

from __future__ import annotations

import json
import textwrap
from collections import Counter

import pytest

from airflow_provider_gee.utils.tiling import grid_tiles
from dev.airflow_stack import AirflowStack
from tests.helpers import kill_task_process

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REGION = [13.2134, 52.4152, 13.3019, 52.4873]

DAG = """
import datetime as dt

import pendulum
from airflow.sdk import DAG, task_group
from airflow_provider_gee.operators.export import GeeExportOperator
from airflow_provider_gee.operators.harvest import GeeHarvestOperator
from airflow_provider_gee.utils.tiling import grid_tiles

TILES = grid_tiles(REGION, 0.03)[:4]


def build(tile, context):
    import ee
    return ee.Image.pixelLonLat().addBands(ee.Image("USGS/SRTMGL1_003")).toFloat()


COMMON = dict(
    build=build, gcp_conn_id="gee", folder="split",
    # retries: Airflow 3.3 may fail a resumed attempt whose trigger fired within seconds of deferring
    # (apache/airflow#72716, docs/performance.md); a tile defers up to six times here (its whole EE
    # task, the wait for a killed try's part, four parts), and every retry re-attaches
    scale=200, file_name_prefix="{tile_id}", pool="gee_tasks", poll_interval=0.5, retries=6,
    retry_delay=dt.timedelta(seconds=2),
)

with DAG("split_resume", schedule=None, start_date=pendulum.datetime(2024, 1, 1)) as dag:

    @task_group
    def tile_pipeline(tile):
        exported = GeeExportOperator(task_id="export", tile=tile, deferrable=True, **COMMON)
        GeeHarvestOperator(task_id="harvest", export_result=exported.output, gcp_conn_id="gee", destination=DEST)

    tile_pipeline.expand(tile=TILES[:3])
    # waits in its worker (not deferred): the one to SIGKILL while a part of its tile runs
    blocking = GeeExportOperator(task_id="blocking_export", tile=TILES[3], deferrable=False, **COMMON)
    GeeHarvestOperator(task_id="blocking_harvest", export_result=blocking.output, gcp_conn_id="gee", destination=DEST)
"""


# parts of 4 s: the killed try's part runs on long after another tile can take the slot it freed
# (the window in which, without the wait for left-behind EE tasks, 3 were in flight with a pool of 2)
@pytest.mark.emulator(ee_concurrency=4, task_seconds=4.0)
def test_split_tiles_hold_the_pool_and_a_killed_split_goes_on_where_it_was(emulator, tmp_path):
    tiles = grid_tiles(REGION, 0.03)[:4]
    emulator.config.max_pixels_per_task = 150  # a tile is 289 pixels, its quadrants 81 or fewer
    dest = tmp_path / "harvest"
    dags = tmp_path / "dags"
    dags.mkdir()
    source = textwrap.dedent(DAG).replace("REGION", repr(REGION)).replace("DEST", repr(str(dest)))
    (dags / "split_resume.py").write_text(source)
    lineage = tmp_path / "openlineage.jsonl"
    env = {
        "AIRFLOW_CONN_GEE": json.dumps(emulator.connection()),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "gee-test",
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "file", "log_file_path": str(lineage), "append": True}),
    }
    blocking_tile = tiles[3]["tile_id"]
    with AirflowStack(tmp_path / "home", dags, env=env, pools={"gee_tasks": 2}) as stack:
        stack.wait_for_dag("split_resume")
        run_id = stack.trigger("split_resume")

        def second_part_is_running() -> str | None:
            ti = stack.api("GET", f"dags/split_resume/dagRuns/{run_id}/taskInstances/blocking_export")
            ops = [op for op in list(emulator.ee.operations.values())
                   if f"{blocking_tile}_q1" in op.metadata["description"]]  # fmt: skip
            return ti["id"] if ti["state"] == "running" and ops and not ops[0].done else None

        ti_id = stack._wait(second_part_is_running, 300, "the blocking export's second part to run", 0.1)
        assert kill_task_process(ti_id), "the blocking export's task process was not found"
        state = stack.wait_for_run("split_resume", run_id, timeout=600)
        tis = stack.task_instances("split_resume", run_id)

    stats = emulator.stats()
    assert state == "success", [(t["task_id"], t["map_index"], t["state"]) for t in tis if t["state"] != "success"]
    killed = next(t for t in tis if t["task_id"] == "blocking_export")
    assert killed["try_number"] >= 2

    # one EE task per tile (refused whole) and per part, never two: the retry took its part back
    per_description = Counter(op.metadata["description"] for op in emulator.ee.operations.values())
    assert max(per_description.values()) == 1, per_description
    states = Counter(op.state for op in emulator.ee.operations.values())
    assert states == {"FAILED": 4, "SUCCEEDED": 16}, states
    blocking_parts = sorted(d.split(".")[2] for d in per_description if f"{blocking_tile}_q" in d)
    assert blocking_parts == [f"{blocking_tile}_q{q}" for q in range(4)]

    # the pool bounds EE's queue with parts too (one part at a time per slot), and fills it, also
    # while the killed try's part runs on without its task instance
    assert stats["peak_in_flight"] == 2

    # every part's file harvested under its own name (with the run's token); nothing left on Drive
    stems = [p.stem.rsplit("_", 1) for p in dest.rglob("*.tif")]
    assert len({token for _, token in stems}) == 1, stems
    names = sorted(name for name, _ in stems)
    assert names == sorted(f"{t['tile_id']}_q{q}" for t in tiles for q in range(4))
    assert stats["drive_files"] == 0

    # lineage: each export read SRTM and wrote its tile's parts to the Drive folder; each harvest
    # read exactly what its export wrote and wrote the destination
    events = [json.loads(line) for line in lineage.read_text().splitlines()]
    done = [e for e in events if e["eventType"] == "COMPLETE"]

    def datasets(event: dict, side: str) -> set[tuple[str, str]]:
        return {(d["namespace"], d["name"]) for d in event[side]}

    exports = [e for e in done if e["job"]["name"].endswith("export")]
    harvests = [e for e in done if e["job"]["name"].endswith("harvest")]
    assert len(exports) == len(harvests) == 4, [e["job"]["name"] for e in done]
    folder = emulator.drive.folder_for_export("split").id  # the folder EE wrote to, by id
    for export in exports:
        assert datasets(export, "inputs") == {("x-earthengine://earthengine-public", "USGS/SRTMGL1_003")}
        outputs = datasets(export, "outputs")
        assert {ns for ns, _ in outputs} == {f"x-google-drive://{folder}"} and len(outputs) == 4
    assert {n.rsplit("_", 1)[0] for e in exports for _, n in datasets(e, "outputs")} == {
        f"{t['tile_id']}_q{q}" for t in tiles for q in range(4)
    }
    assert {frozenset(datasets(e, "outputs")) for e in exports} == {frozenset(datasets(h, "inputs")) for h in harvests}
    assert all(datasets(h, "outputs") == {("file", str(dest))} for h in harvests)
