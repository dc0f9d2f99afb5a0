"""AssetMergeOperator and safe asset housekeeping, in real DAG runs against the emulator (whose
evaluator builds the merged table from the parts)."""

from __future__ import annotations

import json

import pytest

from airflow_provider_gee.exceptions import GeeConfigurationError
from airflow_provider_gee.hooks.earth_engine import EarthEngineHook
from tests.conftest import TEST_PROJECT
from tests.helpers import DEFERRAL_DRIVER, admin
from tests.helpers_dags import run_dag, xcom_values

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("airflow_db")]


@pytest.fixture(autouse=True)
def record_secret(monkeypatch: pytest.MonkeyPatch) -> str:
    """The deployment's secret that signs merge records (``[gee] record_secret``): without one a
    record on an asset is never trusted, so a rerun could not keep an earlier merge. The test
    process has no ``[core] fernet_key`` of its own (its config was read before ``airflow db
    migrate`` wrote one); the environment carries the secret into task subprocesses as well."""
    monkeypatch.setenv("AIRFLOW__GEE__RECORD_SECRET", "test-deployment-secret")
    return "test-deployment-secret"


def seed_parts(emulator, n: int, folder: str = "parts", per_part: int = 2) -> int:
    admin(emulator, "assets", {"name": f"projects/{TEST_PROJECT}/assets/{folder}", "type": "FOLDER"})
    for i in range(n):
        features = [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [13.2 + i / 1000, 52.4 + k / 1000]},
                "properties": {"part": i, "k": k, **({"extra": "x"} if i == 0 else {})},
            }
            for k in range(per_part)
        ]
        admin(emulator, "assets", {"name": f"projects/{TEST_PROJECT}/assets/{folder}/p{i:04d}", "type": "TABLE",
                                   "features": features})  # fmt: skip
    return n * per_part


def merge_dag(retries: int = 0, **options: object) -> str:
    opts = ", ".join(f"{k}={v!r}" for k, v in options.items())
    return f"""
import datetime as dt
import pendulum
from airflow.sdk import DAG
from airflow_provider_gee.operators.assets import AssetMergeOperator

with DAG("DAG_ID", schedule=None, start_date=pendulum.datetime(2024, 1, 1)) as dag:
    AssetMergeOperator(task_id="merge", gcp_conn_id="gee_test", poll_interval=0.2, retries={retries},
                       retry_delay=dt.timedelta(seconds=0), {opts})
"""


@pytest.mark.emulator(ee_concurrency=4, task_seconds=0.1)
def test_twenty_five_parts_are_merged_verified_and_deleted(gee_conn, emulator):
    total = seed_parts(emulator, 25)
    run, _ = run_dag(merge_dag(source_folder="parts", pattern="p*", destination_asset="merged/all"))
    assert run.state == "failed"  # the destination's folder does not exist yet: EE's error
    admin(emulator, "assets", {"name": f"projects/{TEST_PROJECT}/assets/merged", "type": "FOLDER"})
    run, dag_id = run_dag(merge_dag(source_folder="parts", pattern="p*", destination_asset="merged/all",
                                    delete_sources=True))  # fmt: skip
    assert run.state == "success"
    result = xcom_values(dag_id, "merge")[0]
    assert result["feature_count"] == total and len(result["deleted"]) == 25
    assert result["properties"] == ["extra", "k", "part"]
    hook = EarthEngineHook(gcp_conn_id=gee_conn)
    assert hook.get_asset("merged/all")["featureCount"] == str(total)
    assert [a["id"] for a in hook.list_assets("parts")] == []
    merged = list(hook.list_features("merged/all"))
    assert sorted((f["properties"]["part"], f["properties"]["k"]) for f in merged) == [
        (i, k) for i in range(25) for k in range(2)
    ]


@pytest.mark.emulator(ee_concurrency=4, task_seconds=0.1)
def test_a_failed_merge_or_a_wrong_count_keeps_every_part(gee_conn, emulator):
    seed_parts(emulator, 5)
    admin(emulator, "assets", {"name": f"projects/{TEST_PROJECT}/assets/merged", "type": "FOLDER"})
    admin(emulator, "faults", {"kind": "task_failure", "match": "merge*", "message": "Computation timed out."})
    run, _ = run_dag(merge_dag(source_folder="parts", destination_asset="merged/a", delete_sources=True))
    assert run.state == "failed"
    hook = EarthEngineHook(gcp_conn_id=gee_conn)
    assert len(list(hook.list_assets("parts"))) == 5
    admin(emulator, "faults", {"kind": "truncate", "match": "merge*", "drop": 1})
    run, _ = run_dag(merge_dag(source_folder="parts", destination_asset="merged/b", delete_sources=True))
    assert run.state == "failed"
    assert len(list(hook.list_assets("parts"))) == 5
    assert hook.get_asset("merged/b")["featureCount"] == "9"  # the short result stays for inspection


@pytest.mark.slow
@pytest.mark.emulator(ee_concurrency=6, task_seconds=0.05)
def test_twelve_hundred_parts_merge_in_levels_without_leftovers(gee_conn, emulator):
    total = seed_parts(emulator, 1200, per_part=1)
    admin(emulator, "assets", {"name": f"projects/{TEST_PROJECT}/assets/merged", "type": "FOLDER"})
    run, _dag_id = run_dag(merge_dag(source_folder="parts", destination_asset="merged/big", delete_sources=True))
    assert run.state == "success"
    hook = EarthEngineHook(gcp_conn_id=gee_conn)
    assert hook.get_asset("merged/big")["featureCount"] == str(total)
    assert [a["name"] for a in hook.list_assets("merged")] == [hook.asset_name("merged/big")]  # no intermediates left
    assert list(hook.list_assets("parts")) == []
    stats = emulator.stats()
    assert stats["operations"] == 13  # 12 merges of 100 parts, then one of the 12 intermediates
    assert stats["peak_in_flight"] == 1  # one merge at a time: the merging task's one pool slot


@pytest.mark.emulator(ee_concurrency=4, task_seconds=0.1)
def test_existing_destination_with_the_right_count_is_kept(gee_conn, emulator):
    seed_parts(emulator, 3)
    admin(emulator, "assets", {"name": f"projects/{TEST_PROJECT}/assets/merged", "type": "FOLDER"})
    run, _ = run_dag(merge_dag(source_folder="parts", destination_asset="merged/x"))
    assert run.state == "success"
    run, dag_id = run_dag(merge_dag(source_folder="parts", destination_asset="merged/x"))
    assert run.state == "success" and xcom_values(dag_id, "merge")[0]["export_skipped"] is True
    assert emulator.stats()["operations"] == 1


@pytest.mark.emulator(ee_concurrency=4, task_seconds=0.1)
def test_an_empty_merged_table_is_kept_on_a_rerun(gee_conn, emulator):
    # EE omits featureCount when it is 0: an empty table must read as 0 features, not as a mismatch
    assert seed_parts(emulator, 2, per_part=0) == 0
    admin(emulator, "assets", {"name": f"projects/{TEST_PROJECT}/assets/merged", "type": "FOLDER"})
    run, _ = run_dag(merge_dag(source_folder="parts", destination_asset="merged/empty"))
    assert run.state == "success"
    assert "featureCount" not in EarthEngineHook(gcp_conn_id=gee_conn).get_asset("merged/empty")
    run, dag_id = run_dag(merge_dag(source_folder="parts", destination_asset="merged/empty"))
    assert run.state == "success" and xcom_values(dag_id, "merge")[0]["export_skipped"] is True
    assert emulator.stats()["operations"] == 1


def test_cleanup_dry_run_lists_and_refuses_to_leave_its_folder(gee_conn, emulator):
    seed_parts(emulator, 3)
    seed_parts(emulator, 2, folder="keep")
    hook = EarthEngineHook(gcp_conn_id=gee_conn)
    listed = hook.delete_tree("parts", pattern="p000[01]")
    assert [n.rsplit("/", 1)[1] for n in listed] == ["p0000", "p0001"]
    assert len(list(hook.list_assets("parts"))) == 3  # dry run: nothing deleted
    for bad in ("../keep/*", "/keep", f"projects/{TEST_PROJECT}/assets/keep/*"):
        with pytest.raises(GeeConfigurationError, match="could reach outside its folder"):
            hook.delete_tree("parts", pattern=bad, dry_run=False)
    assert len(hook.delete_tree("parts", dry_run=False)) == 3
    assert hook.get_asset("parts") is not None and len(list(hook.list_assets("keep"))) == 2


@pytest.mark.emulator(ee_concurrency=4, task_seconds=0.1)
def test_a_stale_destination_with_the_same_count_is_not_taken_for_the_merge(gee_conn, emulator):
    total = seed_parts(emulator, 3)
    admin(emulator, "assets", {"name": f"projects/{TEST_PROJECT}/assets/merged", "type": "FOLDER"})
    # yesterday's table: as many features as today's parts, with the same properties, but not merged from them
    yesterday = [{"type": "Feature", "geometry": None, "properties": {"part": -1, "k": 0, "extra": "y"}}] * total
    admin(emulator, "assets", {"name": f"projects/{TEST_PROJECT}/assets/merged/daily", "type": "TABLE",
                               "features": yesterday})  # fmt: skip
    run, _ = run_dag(merge_dag(source_folder="parts", destination_asset="merged/daily", delete_sources=True))
    assert run.state == "failed"
    hook = EarthEngineHook(gcp_conn_id=gee_conn)
    assert len(list(hook.list_assets("parts"))) == 3  # today's parts: all kept
    assert emulator.stats()["operations"] == 0


@pytest.mark.emulator(ee_concurrency=4, task_seconds=0.1)
def test_a_retry_after_a_half_finished_delete_finishes_it_without_merging_again(gee_conn, emulator):
    total = seed_parts(emulator, 4)
    admin(emulator, "assets", {"name": f"projects/{TEST_PROJECT}/assets/merged", "type": "FOLDER"})
    # the first delete goes through, then EE fails for longer than the client retries
    admin(emulator, "faults", {"kind": "http", "route": "ee.assets.delete", "status": 503, "skip": 1, "count": 6})
    run, dag_id = run_dag(merge_dag(retries=1, source_folder="parts", destination_asset="merged/all",
                                    delete_sources=True, overwrite=True))  # fmt: skip
    assert run.state == "success"
    hook = EarthEngineHook(gcp_conn_id=gee_conn)
    assert hook.get_asset("merged/all")["featureCount"] == str(total)  # not re-merged from what was left
    assert list(hook.list_assets("parts")) == []
    assert emulator.stats()["operations"] == 1
    assert len(xcom_values(dag_id, "merge")[0]["deleted"]) == 4


# A task process as Airflow runs it, without a task state store (Airflow < 3.3): execute, and on a
# deferral the trigger's first event handed to the method it names.
MERGE_SCRIPT = """
import asyncio, json, sys
from types import SimpleNamespace
from airflow.exceptions import TaskDeferred
from airflow_provider_gee.operators.assets import AssetMergeOperator

op = AssetMergeOperator(task_id="merge", source_folder="parts", destination_asset="merged/all", delete_sources=True,
                        overwrite=sys.argv[2] == "overwrite", gcp_conn_id="gee_test", poll_interval=0.1)
context = {"task": op, "ti": SimpleNamespace(dag_id="d", task_id="merge", run_id="r1", map_index=-1,
                                       try_number=int(sys.argv[1]))}
"""
MERGE_SCRIPT += DEFERRAL_DRIVER


def merge_try(try_number: int, overwrite: bool = False, **popen: object):
    import subprocess
    import sys

    args = [sys.executable, "-c", MERGE_SCRIPT, str(try_number), "overwrite" if overwrite else "keep"]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


@pytest.mark.parametrize(
    ("fault", "killed_after", "overwrite"),
    [
        # the merge export finished; recording what it merged fails until the kill: nothing recorded
        ({"kind": "http", "route": "ee.assets.patch", "status": 503, "count": 1000}, ("ee.assets.patch", 1), True),
        # recorded; the first delete is in flight (it completes on the server after the kill)
        ({"kind": "http", "route": "ee.assets.delete", "delay": 8}, ("ee.assets.delete", 1), False),
        # one part deleted, the second delete in flight
        ({"kind": "http", "route": "ee.assets.delete", "skip": 1, "delay": 8}, ("ee.assets.delete", 2), False),
        # two deleted, the last delete in flight: every part gone, no result returned
        ({"kind": "http", "route": "ee.assets.delete", "skip": 2, "delay": 8}, ("ee.assets.delete", 3), False),
    ],
    ids=["before-the-record", "during-the-first-delete", "after-one-delete", "during-the-last-delete"],
)
@pytest.mark.emulator(ee_concurrency=4, task_seconds=0.1)
def test_a_merge_killed_at_any_step_is_completed_by_the_retry(gee_conn, emulator, fault, killed_after, overwrite):
    import signal

    from tests.helpers import wait_for

    total = seed_parts(emulator, 3)
    admin(emulator, "assets", {"name": f"projects/{TEST_PROJECT}/assets/merged", "type": "FOLDER"})
    admin(emulator, "faults", fault)
    route, requests = killed_after
    first = merge_try(1, overwrite)
    try:
        wait_for(lambda: emulator.stats()["requests"].get(route, 0) >= requests or first.poll() is not None, 60)
        assert first.poll() is None, first.stderr.read()[-3000:] if first.stderr else ""
        first.send_signal(signal.SIGKILL)
    finally:
        first.wait(30)
    admin(emulator, "faults", method="DELETE")
    recorded = not overwrite
    if recorded:  # a part that arrives after the merge was verified is not the merge's: it must survive
        admin(emulator, "assets", {"name": f"projects/{TEST_PROJECT}/assets/parts/late", "type": "TABLE",
                                   "features": []})  # fmt: skip
    retry = merge_try(2, overwrite)
    out, err = retry.communicate(timeout=120)
    assert retry.returncode == 0, err[-3000:]
    result = json.loads(out.strip().splitlines()[-1])
    hook = EarthEngineHook(gcp_conn_id=gee_conn)
    merged = list(hook.list_features("merged/all"))
    assert sorted((f["properties"]["part"], f["properties"]["k"]) for f in merged) == [
        (i, k) for i in range(3) for k in range(2)
    ]
    assert hook.get_asset("merged/all")["featureCount"] == str(total)
    left = [a["name"] for a in hook.list_assets("parts")]
    if recorded:  # the verified parts are all deleted, the late one is kept and reported
        assert left == result["kept"] == [hook.asset_name("parts/late")]
        assert emulator.stats()["operations"] == 1  # never merged again
    else:  # nothing recorded: overwrite let the retry merge again, from every part
        assert left == [] and len(result["deleted"]) == 3
        assert emulator.stats()["operations"] == 2


@pytest.mark.emulator(ee_concurrency=4, task_seconds=0.1)
def test_a_retry_after_a_try_that_died_before_verifying_waits_for_its_export(gee_conn, emulator):
    total = seed_parts(emulator, 3)
    admin(emulator, "assets", {"name": f"projects/{TEST_PROJECT}/assets/merged", "type": "FOLDER"})
    # the first try reads the destination, the three parts and the target, submits the merge,
    # and fails reading the finished destination back
    admin(emulator, "faults", {"kind": "http", "route": "ee.assets.get", "status": 400, "skip": 5, "count": 1})
    run, dag_id = run_dag(merge_dag(retries=1, source_folder="parts", destination_asset="merged/all",
                                    delete_sources=True))  # fmt: skip
    assert emulator.stats()["faults"][0]["fired"] == 1
    assert run.state == "success"
    hook = EarthEngineHook(gcp_conn_id=gee_conn)
    assert hook.get_asset("merged/all")["featureCount"] == str(total)
    assert list(hook.list_assets("parts")) == []
    assert emulator.stats()["operations"] == 1  # the retry waited for the first try's export
    assert len(xcom_values(dag_id, "merge")[0]["deleted"]) == 3


@pytest.mark.emulator(ee_concurrency=4, task_seconds=0.1)
def test_a_retry_after_a_short_merge_merges_again_when_overwrite_allows(gee_conn, emulator):
    total = seed_parts(emulator, 3)
    admin(emulator, "assets", {"name": f"projects/{TEST_PROJECT}/assets/merged", "type": "FOLDER"})
    admin(emulator, "faults", {"kind": "truncate", "match": "merge*", "drop": 1})  # the first merge only
    run, dag_id = run_dag(merge_dag(retries=1, source_folder="parts", destination_asset="merged/all",
                                    delete_sources=True, overwrite=True))  # fmt: skip
    assert run.state == "success"
    hook = EarthEngineHook(gcp_conn_id=gee_conn)
    assert hook.get_asset("merged/all")["featureCount"] == str(total)
    assert list(hook.list_assets("parts")) == []
    assert emulator.stats()["operations"] == 2  # the short merge, then a new one (not a wait on the short one)
    assert len(xcom_values(dag_id, "merge")[0]["deleted"]) == 3
