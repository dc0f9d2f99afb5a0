"""AssetMergeOperator trusts a merge record only when it is provably its own (issue #32 point 6).

Asset properties can be written by anyone who can write the asset, so each test here plays a
hostile (or merely mistaken) user with write access to the folders: it creates the destination or
an intermediate itself and sets the merge's properties on it through the EE asset API, as
``ee.data.setAssetProperties`` would. The merge must then neither skip its export nor delete
anything on the strength of such a record.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import uuid
from typing import Any

import pendulum
import pytest

from airflow_provider_gee.hooks.earth_engine import EarthEngineHook
from airflow_provider_gee.operators.assets import MERGED_BY, MERGED_FROM, MERGED_PARTS, encode_parts
from tests.conftest import TEST_PROJECT
from tests.helpers import DEFERRAL_DRIVER, admin
from tests.helpers_dags import write_dag, xcom_values
from tests.integration.test_asset_merge import merge_dag, record_secret, seed_parts  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("airflow_db", "record_secret")]

ROOT = f"projects/{TEST_PROJECT}/assets"
#: a run in the future whose id anyone can predict (a scheduled run's is as easy to name)
FUTURE = pendulum.datetime(2030, 1, 1)


def predicted_instance(dag_id: str, when: pendulum.DateTime) -> str:
    """The task instance id the merge records in ``gee_merged_by`` for the run of ``dag_id`` at
    ``when``: the run id is a function of the logical date, so anyone can name it in advance (a
    scheduled run's as easily)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.types import DagRunType

    run_id = DagRun.generate_run_id(run_type=DagRunType.MANUAL, logical_date=when, run_after=when)
    return f"{dag_id}/merge/{run_id}/-1"


def run_dag(source: str, dag_id: str | None = None, when: pendulum.DateTime | None = None) -> tuple[Any, str]:
    """Write the DAG file, import it, run ``dag.test(logical_date=when)``; return (dag run, dag_id)."""
    dag_id = dag_id or f"t_{uuid.uuid4().hex[:10]}"
    path = write_dag(source, dag_id)
    spec = importlib.util.spec_from_file_location(f"dagmod_{dag_id}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    when = when or pendulum.now("UTC")
    return module.dag.test(logical_date=when, run_after=when), dag_id


# The merge as a task process runs it on Airflow < 3.3 (no task state store), task instance
# d/merge/r1/-1, options as JSON: execute, and on a deferral the trigger's first event handed to
# the method it names.
SCRIPT = """
import asyncio, json, sys
from types import SimpleNamespace
from airflow.exceptions import TaskDeferred
from airflow_provider_gee.operators.assets import AssetMergeOperator

op = AssetMergeOperator(task_id="merge", gcp_conn_id="gee_test", poll_interval=0.1, **json.loads(sys.argv[1]))
context = {"task": op, "ti": SimpleNamespace(dag_id="d", task_id="merge", run_id="r1", map_index=-1, try_number=1)}
"""
SCRIPT += DEFERRAL_DRIVER


def run_without_state_store(**options: object) -> tuple[int, str]:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(options)], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    return done.returncode, done.stdout + done.stderr


def junk_table(emulator, name: str, rows: int) -> None:
    """A table of ``rows`` features carrying every property the parts have, none of their data."""
    junk = [{"type": "Feature", "geometry": None, "properties": {"part": -1, "k": -1, "extra": "junk"}}] * rows
    admin(emulator, "assets", {"name": f"{ROOT}/{name}", "type": "TABLE", "features": junk})


def digest(hook: EarthEngineHook, parts: list[str]) -> str:
    """``gee_merged_from`` as the operator computes it, from what anyone who can read the parts sees."""
    lines = []
    for name in sorted(hook.asset_name(p) for p in parts):
        asset = hook.get_asset(name)
        lines.append(f"{name}|{asset.get('updateTime')}|{int(asset.get('featureCount') or 0)}")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def merged_folder_and_parts(emulator, gee_conn: str) -> tuple[EarthEngineHook, list[str]]:
    """The destination folder ``merged`` (created) and the seeded parts' names, with a hook."""
    admin(emulator, "assets", {"name": f"{ROOT}/merged", "type": "FOLDER"})
    hook = EarthEngineHook(gcp_conn_id=gee_conn)
    return hook, names(hook, "parts")


def names(hook: EarthEngineHook, folder: str) -> list[str]:
    return [a["name"] for a in hook.list_assets(folder)]


def merged_rows(hook: EarthEngineHook, table: str) -> list[tuple[int, int]]:
    return sorted((f["properties"]["part"], f["properties"]["k"]) for f in hook.list_features(table))


@pytest.mark.parametrize(
    ("delete_sources", "overwrite", "store"),
    [(False, False, True), (False, True, True), (True, True, True), (False, False, False)],
    ids=["keep", "overwrite-without-deletes", "overwrite-and-delete", "keep-without-a-task-state-store"],
)
@pytest.mark.emulator(ee_concurrency=4, task_seconds=0.1)
def test_a_forged_record_naming_this_run_deletes_nothing_it_was_not_given(
    gee_conn, emulator, delete_sources, overwrite, store
):
    total = seed_parts(emulator, 3)
    seed_parts(emulator, 1, folder="keep")  # an unrelated table the merge was never given
    admin(emulator, "assets", {"name": f"{ROOT}/merged", "type": "FOLDER"})
    hook = EarthEngineHook(gcp_conn_id=gee_conn)
    parts, unrelated = names(hook, "parts"), names(hook, "keep")
    # the hostile destination: junk rows, a record naming the run about to come (or, without a
    # task state store, the task instance the script runs as), and a parts list dated far ahead
    # that names the parts and the unrelated table
    junk_table(emulator, "merged/all", 2)
    source = merge_dag(source_folder="parts", destination_asset="merged/all", delete_sources=delete_sources,
                       overwrite=overwrite)  # fmt: skip
    dag_id = f"t_{uuid.uuid4().hex[:10]}"
    instance = predicted_instance(dag_id, FUTURE) if store else "d/merge/r1/-1"
    forged = {
        MERGED_FROM: "0" * 64,
        MERGED_BY: instance,
        MERGED_PARTS: encode_parts("9999-12-31T23:59:59Z", {"parts": parts + unrelated, "intermediates": unrelated}),
    }
    hook.set_asset_properties("merged/all", forged)
    if store:
        run, _ = run_dag(source, dag_id, FUTURE)
        assert instance == f"{dag_id}/merge/{run.run_id}/-1"  # the record named this very run
        succeeded = run.state == "success"
    else:
        code, output = run_without_state_store(source_folder="parts", destination_asset="merged/all",
                                               delete_sources=delete_sources, overwrite=overwrite)  # fmt: skip
        succeeded = code == 0
        assert succeeded or "was not merged from these 3 parts" in output, output[-3000:]
    assert names(hook, "keep") == unrelated  # never deleted, whatever the record says
    if not overwrite:  # the destination is not ours: the run fails, no export, nothing deleted
        assert not succeeded
        assert names(hook, "parts") == parts
        assert emulator.stats()["operations"] == 0
        return
    assert succeeded
    assert emulator.stats()["operations"] == 1  # merged anew, over the junk
    assert merged_rows(hook, "merged/all") == [(i, k) for i in range(3) for k in range(2)]
    assert hook.get_asset("merged/all")["featureCount"] == str(total)
    result = xcom_values(dag_id, "merge")[0]
    if delete_sources:  # exactly the parts it was given
        assert names(hook, "parts") == [] and result["deleted"] == parts
    else:
        assert names(hook, "parts") == parts and result["deleted"] == []


@pytest.mark.emulator(ee_concurrency=4, task_seconds=0.1)
def test_a_forged_digest_on_junk_rows_does_not_skip_the_merge(gee_conn, emulator):
    total = seed_parts(emulator, 3, per_part=1)
    hook, parts = merged_folder_and_parts(emulator, gee_conn)
    # three junk rows with the parts' properties and the digest anyone who reads the parts can compute
    junk_table(emulator, "merged/all", total)
    hook.set_asset_properties("merged/all", {MERGED_FROM: digest(hook, parts)})
    run, _ = run_dag(merge_dag(source_folder="parts", destination_asset="merged/all", delete_sources=True))
    assert run.state == "failed"  # an unrecorded destination, and no overwrite
    assert names(hook, "parts") == parts
    assert emulator.stats()["operations"] == 0
    run, dag_id = run_dag(merge_dag(source_folder="parts", destination_asset="merged/all", delete_sources=True,
                                    overwrite=True))  # fmt: skip
    assert run.state == "success"
    assert xcom_values(dag_id, "merge")[0]["export_skipped"] is False
    assert emulator.stats()["operations"] == 1
    assert merged_rows(hook, "merged/all") == [(i, 0) for i in range(3)]
    assert names(hook, "parts") == []


@pytest.mark.emulator(ee_concurrency=4, task_seconds=0.1)
def test_a_forged_intermediate_is_not_taken_for_a_merged_group(gee_conn, emulator):
    seed_parts(emulator, 4, per_part=1)
    hook, parts = merged_folder_and_parts(emulator, gee_conn)
    # the first group's reserved intermediate name, taken by junk with that group's digest
    junk_table(emulator, "merged/all__merge_l1_0000", 2)
    hook.set_asset_properties("merged/all__merge_l1_0000", {MERGED_FROM: digest(hook, parts[:2])})
    run, _ = run_dag(merge_dag(source_folder="parts", destination_asset="merged/all", delete_sources=True,
                               max_parts_per_merge=2))  # fmt: skip
    assert run.state == "failed"
    assert names(hook, "parts") == parts
    assert hook.get_asset("merged/all") is None


@pytest.mark.emulator(ee_concurrency=4, task_seconds=0.1)
def test_a_record_written_by_another_deployment_is_not_trusted(gee_conn, emulator, monkeypatch):
    seed_parts(emulator, 3)
    hook, parts = merged_folder_and_parts(emulator, gee_conn)
    monkeypatch.setenv("AIRFLOW__GEE__RECORD_SECRET", "deployment-a")
    run, _ = run_dag(merge_dag(source_folder="parts", destination_asset="merged/x"))
    assert run.state == "success"
    # another deployment sharing the EE identity (its own secret) does not take a's merge for its own
    monkeypatch.setenv("AIRFLOW__GEE__RECORD_SECRET", "deployment-b")
    run, _ = run_dag(merge_dag(source_folder="parts", destination_asset="merged/x", delete_sources=True))
    assert run.state == "failed"
    assert names(hook, "parts") == parts
    # deployment a itself does: the merge is kept (no second export) and its parts deleted
    monkeypatch.setenv("AIRFLOW__GEE__RECORD_SECRET", "deployment-a")
    run, dag_id = run_dag(merge_dag(source_folder="parts", destination_asset="merged/x", delete_sources=True))
    assert run.state == "success" and xcom_values(dag_id, "merge")[0]["export_skipped"] is True
    assert names(hook, "parts") == []
    assert emulator.stats()["operations"] == 1


@pytest.mark.emulator(ee_concurrency=4, task_seconds=0.1)
def test_without_any_secret_no_record_on_an_asset_is_trusted(gee_conn, emulator, monkeypatch):
    seed_parts(emulator, 3)
    hook, parts = merged_folder_and_parts(emulator, gee_conn)
    monkeypatch.setenv("AIRFLOW__GEE__RECORD_SECRET", "")
    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", "")
    run, _ = run_dag(merge_dag(source_folder="parts", destination_asset="merged/x"))
    assert run.state == "success"
    run, _ = run_dag(merge_dag(source_folder="parts", destination_asset="merged/x", delete_sources=True))
    assert run.state == "failed"  # its own earlier merge cannot be proven: not taken, nothing deleted
    assert names(hook, "parts") == parts
    assert emulator.stats()["operations"] == 1
    from airflow_provider_gee.operators.assets import _record_key

    assert _record_key() is None


@pytest.mark.emulator(ee_concurrency=4, task_seconds=0.1)
def test_an_absent_feature_count_is_counted_by_ee_not_taken_as_zero(gee_conn, emulator):
    total = seed_parts(emulator, 3)
    hook, parts = merged_folder_and_parts(emulator, gee_conn)
    # EE answers these tables without featureCount (it omits a 0, and need not have counted yet):
    # the emulator's switch for the undocumented case
    admin(emulator, "config", {"feature_count": "never"})
    assert "featureCount" not in hook.get_asset(parts[0])
    admin(emulator, "faults", {"kind": "truncate", "match": "merge*", "drop": 1})  # the first merge only
    run, _ = run_dag(merge_dag(source_folder="parts", destination_asset="merged/a", delete_sources=True))
    assert run.state == "failed"  # 5 features, counted, against the parts' 6: not 0 == 0
    assert names(hook, "parts") == parts
    run, dag_id = run_dag(merge_dag(source_folder="parts", destination_asset="merged/b", delete_sources=True))
    assert run.state == "success"
    assert xcom_values(dag_id, "merge")[0]["feature_count"] == total
    assert merged_rows(hook, "merged/b") == [(i, k) for i in range(3) for k in range(2)]
    assert names(hook, "parts") == []


@pytest.mark.emulator(ee_concurrency=4, task_seconds=0.1)
def test_the_destination_is_counted_again_before_a_retry_deletes(gee_conn, emulator):
    import threading

    from tests.helpers import wait_for

    seed_parts(emulator, 4)
    hook, parts = merged_folder_and_parts(emulator, gee_conn)
    # the first delete goes through, then EE fails for longer than the client retries: the try
    # fails with its deletes recorded in the task state store, and the retry would finish them
    admin(emulator, "faults", {"kind": "http", "route": "ee.assets.delete", "status": 503, "skip": 1, "count": 6})

    def rewrite_the_destination() -> None:
        # meanwhile the verified table is replaced (5 rows, not 8), its record copied along
        wait_for(lambda: emulator.stats()["faults"][0]["fired"] >= 6, 60)
        record = hook.get_asset("merged/all")["properties"]
        junk = [{"type": "Feature", "geometry": None, "properties": {"part": -1, "k": -1, "extra": "x"}}] * 5
        admin(emulator, "assets", {"name": f"{ROOT}/merged/all", "type": "TABLE", "features": junk, "overwrite": True})
        hook.set_asset_properties("merged/all", record)

    writer = threading.Thread(target=rewrite_the_destination)
    writer.start()
    source = merge_dag(retries=1, source_folder="parts", destination_asset="merged/all", delete_sources=True)
    run, _ = run_dag(source.replace("timedelta(seconds=0)", "timedelta(seconds=3)"))  # time for the rewrite
    writer.join(60)
    assert run.state == "failed"
    assert names(hook, "parts") == parts[1:]  # the retry deleted nothing more


@pytest.mark.emulator(task_seconds=0.1)
def test_a_stored_delete_record_deletes_only_parts_this_merge_takes(gee_conn, emulator):
    """A retry finishing the deletes an earlier try began reads them from the task state store;
    even that record names nothing the merge may delete beyond its own parts."""
    from types import SimpleNamespace

    from airflow_provider_gee.operators.assets import AssetMergeOperator

    seed_parts(emulator, 2)
    seed_parts(emulator, 1, folder="keep")  # an unrelated table the merge was never given
    hook, parts = merged_folder_and_parts(emulator, gee_conn)
    unrelated = names(hook, "keep")
    junk_table(emulator, "merged/all", 2)
    destination = f"{ROOT}/merged/all"
    hook.set_asset_properties("merged/all", {MERGED_FROM: "f" * 64})
    store = {
        "gee_merge_deleting": {
            "destination": destination, "from": "f" * 64, "intermediates": [],
            "parts": [parts[0], *unrelated, f"{ROOT}/parts/../keep/p0000"],  # the last under the folder by name only
            "result": {"asset_id": destination, "feature_count": 2, "parts": [parts[0]], "deleted": []},
        }
    }  # fmt: skip

    class Store(dict):
        def set(self, key: str, value: Any) -> None:
            self[key] = value

        def delete(self, key: str) -> None:
            self.pop(key, None)

    op = AssetMergeOperator(task_id="merge", gcp_conn_id=gee_conn, source_folder="parts",
                            destination_asset="merged/all", delete_sources=True)  # fmt: skip
    ti = SimpleNamespace(dag_id="d", task_id="merge", run_id="r1", map_index=-1, try_number=2)
    result = op.execute({"task": op, "ti": ti, "task_state_store": Store(store)})
    assert result["deleted"] == [parts[0]]
    assert names(hook, "keep") == unrelated  # named in the record, not this merge's: kept
    assert names(hook, "parts") == parts[1:]
