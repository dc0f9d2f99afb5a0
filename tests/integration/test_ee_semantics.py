"""Earth Engine's REST semantics as the emulator models them (docs/emulator.md names the source of
each), and the provider held against every variant Google leaves open: listings of the caller's
own tasks in any order, finished tasks that EE forgets, a requestId repeated with another body, a
full queue, undocumented statuses, asset ids, and a trigger whose listing is refused for good."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import ee
import pytest

from airflow_provider_gee.exceptions import EarthEngineError
from airflow_provider_gee.hooks.earth_engine import EarthEngineHook
from airflow_provider_gee.triggers import task as trigger_module
from airflow_provider_gee.triggers.task import GeeTaskTrigger, OperationPoller
from tests.conftest import TEST_PROJECT
from tests.helpers import admin, export_constant, wait_for
from tests.helpers_dags import run_dag, task_instances, xcom_values

pytestmark = pytest.mark.integration

PROJECT = f"projects/{TEST_PROJECT}"


@pytest.fixture
def hook(gee_conn: str) -> EarthEngineHook:
    return EarthEngineHook(gcp_conn_id=gee_conn)


def configure(emulator, **settings) -> dict:
    return admin(emulator, "config", settings)


def seed(emulator, name: str, kind: str = "FOLDER", features: list | None = None) -> None:
    body = {"name": name, "type": kind} | ({"features": features} if features is not None else {})
    admin(emulator, "assets", body)


# ---------------------------------------------------------------- operations listing


def test_each_identity_lists_only_its_own_tasks(hook, user_conn, emulator):
    mine = export_constant(hook, "sa-task")["name"]
    person = EarthEngineHook(gcp_conn_id=user_conn)
    theirs = export_constant(person, "user-task")["name"]
    assert [op["name"] for op in hook.list_operations()] == [mine]
    assert [op["name"] for op in person.list_operations()] == [theirs]
    assert person.get_operation(mine)["name"] == mine  # read by name: any identity of the project


@pytest.mark.parametrize("order", ["newest", "oldest", "random"])
@pytest.mark.emulator(ee_concurrency=1, task_seconds=60)
def test_the_poller_finds_watched_tasks_in_any_order_reading_a_bounded_listing(
    gee_conn, hook, emulator, order, monkeypatch
):
    configure(emulator, operations_order=order)
    names = [export_constant(hook, f"t{i:04d}", scale=5000)["name"] for i in range(520)]
    watched = names[:3] + names[-3:]  # both ends: some lie beyond the first page whatever the order
    monkeypatch.setattr(trigger_module, "LIST_MAX_PAGES", 1)  # one page of 500, the rest one by one

    async def first_poll() -> tuple[dict, OperationPoller]:
        poller = OperationPoller(gee_conn, None, 0.1)
        watch = poller.watch(watched)
        seen = {}
        while len(seen) < len(watched):
            name, op, error = await asyncio.wait_for(watch.queue.get(), 30)
            assert error is None
            seen[name] = op["metadata"]["state"]
        poller.unwatch(watch)
        return seen, poller

    seen, poller = asyncio.run(first_poll())
    assert set(seen) == set(watched) and set(seen.values()) <= {"PENDING", "RUNNING"}
    # one listing page, then a GET for each watched task the page did not hold
    assert poller.requests <= 1 + len(watched)


@pytest.mark.emulator(ee_concurrency=50, task_seconds=0)
def test_the_queue_count_reads_past_a_page_of_finished_tasks(hook, emulator):
    admin(emulator, "faults", {"kind": "task_failure", "match": "*", "count": 500, "message": "Failed fast."})
    for i in range(500):
        export_constant(hook, f"old{i:04d}", scale=5000)
    wait_for(lambda: emulator.stats()["operations_by_state"].get("FAILED") == 500)
    configure(emulator, task_seconds=60, ee_concurrency=1, operations_order="oldest")
    for i in range(20):
        export_constant(hook, f"new{i:04d}", scale=5000)
    # the first page holds 500 finished tasks: a count that stops there would say 0
    assert hook.count_active_operations() == 20


# ---------------------------------------------------------------- forgotten operations


@pytest.mark.emulator(task_seconds=0.05, operation_ttl_seconds=2.0)
def test_ee_forgets_finished_tasks_and_their_request_ids(hook, emulator):
    first = export_constant(hook, "ttl-1")["name"]
    # the TTL leaves a busy machine time to see the task done before EE forgets it
    wait_for(lambda: hook.get_operation(first).get("done"))
    time.sleep(2.5)  # past the TTL
    with pytest.raises(EarthEngineError) as err:
        hook.get_operation(first)
    assert err.value.status_code == 404
    assert list(hook.list_operations()) == []
    assert export_constant(hook, "ttl-1")["name"] != first  # the requestId is free again


EXPORT_DAG = """
import datetime as dt
import random
import pendulum
from airflow.sdk import DAG
from airflow_provider_gee.operators.export import GeeExportOperator

def build(tile, context):
    import ee
    # not the same expression twice: a retry rebuilds another body for the same requestId
    return ee.Image.constant(random.random())

with DAG("DAG_ID", schedule=None, start_date=pendulum.datetime(2024, 1, 1)) as dag:
    GeeExportOperator(
        task_id="export", build=build, gcp_conn_id="gee_test", folder="out", scale=5000,
        region=[13.2134, 52.4152, 13.3019, 52.4873], poll_interval=0.1, retries=RETRIES,
        retry_delay=dt.timedelta(seconds=1),
    )
"""


def export_dag(retries: int = 1) -> str:
    return EXPORT_DAG.replace("RETRIES", str(retries))


@pytest.mark.usefixtures("airflow_db")
@pytest.mark.emulator(task_seconds=0.1, operation_ttl_seconds=0.3)
def test_a_forgotten_task_whose_outputs_exist_is_done_without_resubmitting(gee_conn, emulator):
    # the trigger's first read is lost; by the retry EE has forgotten the finished task
    admin(emulator, "faults", {"kind": "http", "route": "ee.operations.get", "status": 403, "count": 1})
    run, dag_id = run_dag(export_dag())
    assert run.state == "success"
    assert emulator.stats()["export_requests"] == 1
    assert xcom_values(dag_id, "export")[0]["state"] == "SUCCEEDED"


@pytest.mark.usefixtures("airflow_db")
@pytest.mark.emulator(task_seconds=0.1, operation_ttl_seconds=0.3)
def test_a_forgotten_task_without_outputs_is_submitted_again(gee_conn, emulator):
    admin(emulator, "faults", {"kind": "task_failure", "match": "*", "count": 1, "message": "Internal error."})
    run, dag_id = run_dag(export_dag())
    assert run.state == "success"
    stats = emulator.stats()
    assert stats["export_requests"] == 2 and stats["operations_by_state"] == {"SUCCEEDED": 1}
    assert [ti.try_number for ti in task_instances(dag_id)] == [2]


# ---------------------------------------------------------------- requestId reuse


@pytest.mark.parametrize("status", [400, 409])
def test_a_request_id_repeated_with_another_body_is_refused(hook, emulator, status):
    configure(emulator, error_status={"request_id_reused": status})
    first = export_constant(hook, "same-id", value=1)["name"]
    assert export_constant(hook, "same-id", value=1)["name"] == first  # identical: the same task
    with pytest.raises(EarthEngineError) as err:
        export_constant(hook, "same-id", value=2)
    assert err.value.status_code == status and not err.value.retryable
    configure(emulator, request_id_reuse="return")
    assert export_constant(hook, "same-id", value=2)["name"] == first
    assert emulator.stats()["operations"] == 1


@pytest.mark.usefixtures("airflow_db")
@pytest.mark.parametrize(("reuse", "status"), [("reject", 400), ("reject", 409), ("return", 400)])
@pytest.mark.emulator(task_seconds=0.2)
def test_a_retry_with_a_rebuilt_body_takes_its_task_instead_of_failing_or_duplicating(
    gee_conn, emulator, reuse, status
):
    configure(emulator, request_id_reuse=reuse, error_status={"request_id_reused": status})
    # EE starts the task, every answer to the submission is lost (beyond the hook's 5 retries)
    admin(emulator, "faults", {"kind": "http", "route": "ee.image.export", "status": 503, "after": True, "count": 6})
    run, dag_id = run_dag(export_dag())
    assert run.state == "success"
    stats = emulator.stats()
    assert stats["operations"] == 1 and stats["operations_by_state"] == {"SUCCEEDED": 1}
    assert [ti.try_number for ti in task_instances(dag_id)] == [2]


# ---------------------------------------------------------------- a full queue


@pytest.mark.parametrize("status", [429, 400])
@pytest.mark.emulator(ee_concurrency=1, task_seconds=60, max_queued=1)
def test_a_full_queue_is_retried_with_backoff_with_ees_message(hook, emulator, status):
    configure(emulator, error_status={"queue_full": status})
    export_constant(hook, "q-running")
    export_constant(hook, "q-pending")
    before = emulator.stats()["requests"]["ee.image.export"]
    with pytest.raises(EarthEngineError, match=r"Too many tasks already in the queue \(1\)") as err:
        export_constant(hook, "q-refused")
    assert err.value.retryable and err.value.status_code == status
    assert emulator.stats()["requests"]["ee.image.export"] - before == 1 + hook.retry_policy.max_retries


@pytest.mark.usefixtures("airflow_db")
@pytest.mark.emulator(ee_concurrency=1, task_seconds=1.5, max_queued=1)
def test_a_tile_refused_by_a_full_queue_is_exported_once_the_queue_drains(gee_conn, hook, emulator):
    configure(emulator, error_status={"queue_full": 400})  # not even a 429: EE's message tells
    export_constant(hook, "q-running")
    export_constant(hook, "q-pending")
    run, dag_id = run_dag(export_dag(retries=6))
    assert run.state == "success"
    stats = emulator.stats()
    assert stats["operations"] == 3 and stats["operations_by_state"] == {"SUCCEEDED": 3}
    assert task_instances(dag_id)[0].try_number > 1


# ---------------------------------------------------------------- undocumented statuses


@pytest.mark.parametrize("status", [200, 400])
@pytest.mark.emulator(task_seconds=0.05)
def test_cancelling_a_finished_task_is_not_an_error(hook, emulator, status):
    configure(emulator, error_status={"cancel_done": status})
    name = export_constant(hook, "done-1")["name"]
    wait_for(lambda: hook.get_operation(name).get("done"))
    hook.cancel_operation(name)
    assert hook.get_operation(name)["metadata"]["state"] == "SUCCEEDED"


@pytest.mark.parametrize("status", [409, 400])
def test_a_folder_created_meanwhile_by_someone_else_is_not_an_error(hook, emulator, status):
    configure(emulator, error_status={"asset_exists": status})
    seed(emulator, f"{PROJECT}/assets/shared")
    # the hook's look finds nothing (someone creates it right after): its create meets the folder
    admin(emulator, "faults", {"kind": "http", "route": "ee.assets.get", "status": 404, "count": 1})
    assert hook.create_folder("shared") == f"{PROJECT}/assets/shared"
    assert emulator.stats()["requests"]["ee.assets.create"] == 1
    seed(emulator, f"{PROJECT}/assets/table", "TABLE", [])
    admin(emulator, "faults", {"kind": "http", "route": "ee.assets.get", "status": 404, "count": 1})
    with pytest.raises(EarthEngineError, match="Cannot overwrite asset"):
        hook.create_folder("table")  # a table of that name is no folder: EE's own message


# ---------------------------------------------------------------- asset ids


def test_asset_ids_are_full_names_in_projects_and_paths_in_the_catalogue(hook, emulator):
    for folder in ("TIGER", "TIGER/2018"):
        seed(emulator, f"projects/earthengine-public/assets/{folder}")
    states = [{"type": "Feature", "geometry": None, "properties": {"i": i}} for i in range(3)]
    seed(emulator, "projects/earthengine-public/assets/TIGER/2018/States", "TABLE", states)
    seed(emulator, f"{PROJECT}/assets/empty", "TABLE", [])
    empty = hook.get_asset("empty")
    assert empty["id"] == f"{PROJECT}/assets/empty"
    assert "featureCount" not in empty and "sizeBytes" not in empty  # int64 zero: omitted
    hook.initialize_ee()
    assert ee.data.getAsset("TIGER/2018/States")["id"] == "TIGER/2018/States"
    # a relative id in an expression is the public catalogue's, as ee resolves it
    assert ee.FeatureCollection("TIGER/2018/States").size().getInfo() == 3
    assert hook.input_asset_name("TIGER/2018/States") == "projects/earthengine-public/assets/TIGER/2018/States"
    assert hook.asset_name("exports/t1") == f"{PROJECT}/assets/exports/t1"  # destinations: the project's


# ---------------------------------------------------------------- the trigger's own failures


@pytest.mark.emulator(ee_concurrency=0)
def test_a_listing_refused_for_good_ends_every_waiting_trigger_with_ees_message(gee_conn, hook, emulator):
    names = [export_constant(hook, f"w{i}", scale=5000)["name"] for i in range(8)]
    message = "Permission 'earthengine.operations.list' denied."
    admin(emulator, "faults", {"kind": "http", "route": "ee.operations.list", "status": 403, "count": 100,
                               "message": message})  # fmt: skip

    async def wait_all() -> list[dict]:
        triggers = [GeeTaskTrigger(names[i : i + 4], gcp_conn_id=gee_conn, poll_interval=0.1) for i in (0, 4)]
        events = await asyncio.wait_for(asyncio.gather(*(anext(t.run()) for t in triggers)), 30)
        return [e.payload for e in events]

    events = asyncio.run(wait_all())
    assert [e["status"] for e in events] == ["error", "error"]
    assert all(message in e["message"] for e in events)
    assert emulator.stats()["requests"]["ee.operations.list"] == 1  # refused for good: not asked again


@pytest.mark.emulator(task_seconds=0.1)
def test_a_listing_that_fails_transiently_backs_off_and_recovers(gee_conn, hook, emulator):
    names = [export_constant(hook, f"b{i}", scale=5000)["name"] for i in range(4)]
    # more failures than the hook's own retries: one whole poll fails, the next succeeds
    admin(emulator, "faults", {"kind": "http", "route": "ee.operations.list", "status": 503, "count": 7})

    async def wait() -> tuple[dict, OperationPoller]:
        event = await asyncio.wait_for(anext(GeeTaskTrigger(names, gcp_conn_id=gee_conn, poll_interval=0.1).run()), 60)
        return event.payload, OperationPoller.for_connection(gee_conn, None, 0.1)

    event, poller = asyncio.run(wait())
    assert event["status"] == "success" and len(event["operations"]) == 4
    assert poller.delay(1) == 0.2 and poller.delay(20) == trigger_module.MAX_BACKOFF_SECONDS


def test_a_watcher_added_while_the_poller_closes_its_session_is_polled(monkeypatch):
    class Poller(OperationPoller):
        async def poll_once(self, session: object) -> None:
            for w in list(self.watches):
                w.queue.put_nowait((next(iter(w.names)), {"metadata": {"state": "SUCCEEDED"}}, None))

    late: dict = {}

    class Session:  # stands in for aiohttp's session: its close is where the race lies
        async def __aenter__(self) -> Session:
            return self

        async def __aexit__(self, *exc: object) -> None:
            if "watch" not in late:  # the loop saw no watcher and is closing: a trigger arrives right now
                late["watch"] = late["poller"].watch(["projects/p/operations/late"])
            await asyncio.sleep(0)

    monkeypatch.setattr(aiohttp, "ClientSession", lambda **kwargs: Session())

    async def scenario() -> tuple:
        poller = late["poller"] = Poller("gee_test", None, 0.01)
        first = poller.watch(["projects/p/operations/first"])
        await first.queue.get()
        poller.unwatch(first)
        return await asyncio.wait_for(late_queue_get(), 5)

    async def late_queue_get() -> tuple:
        while "watch" not in late:
            await asyncio.sleep(0.005)
        return await late["watch"].queue.get()

    name, _, error = asyncio.run(scenario())
    assert name == "projects/p/operations/late" and error is None
