"""Many waiting triggers share one poll per interval (real aiohttp against the emulator)."""

from __future__ import annotations

import asyncio

import pytest

from airflow_provider_gee.hooks.earth_engine import EarthEngineHook
from airflow_provider_gee.triggers.task import GET_EACH_UP_TO, GeeTaskTrigger, OperationPoller
from tests.helpers import admin, export_constant

pytestmark = pytest.mark.integration


def submit(hook: EarthEngineHook, n: int) -> list[str]:
    return [export_constant(hook, f"share-{i}", i, scale=5000)["name"] for i in range(n)]


@pytest.mark.emulator(ee_concurrency=0, task_seconds=0.05)
def test_hundred_waiting_triggers_cost_one_listing_per_interval(gee_conn, emulator):
    hook = EarthEngineHook(gcp_conn_id=gee_conn)
    watched = submit(hook, 100)
    requests_before = dict(emulator.stats()["requests"])

    async def scenario() -> tuple[list[dict], OperationPoller]:
        triggers = [GeeTaskTrigger([name], gcp_conn_id=gee_conn, poll_interval=0.25) for name in watched]
        runs = [asyncio.create_task(anext(t.run())) for t in triggers]
        poller = OperationPoller.for_connection(gee_conn, None, 0.25)
        while poller.polls < 4:  # several intervals while all 100 are PENDING (counted, not timed)
            await asyncio.sleep(0.05)
        admin(emulator, "config", {"ee_concurrency": 100})
        events = await asyncio.wait_for(asyncio.gather(*runs), timeout=60)
        return [e.payload for e in events], poller

    events, poller = asyncio.run(scenario())
    assert [e["status"] for e in events] == ["success"] * 100
    assert {next(iter(e["operations"])) for e in events} == set(watched)
    after = emulator.stats()["requests"]
    listings = after.get("ee.operations.list", 0) - requests_before.get("ee.operations.list", 0)
    gets = after.get("ee.operations.get", 0) - requests_before.get("ee.operations.get", 0)
    # one listing page (100 operations < 500 per page) per poll, no per-operation reads
    assert listings == poller.polls and gets == 0
    assert poller.requests / poller.polls == 1.0
    print(f"\n100 waiting triggers: {poller.requests} requests in {poller.polls} polls")


@pytest.mark.emulator(ee_concurrency=0)
def test_few_waiting_triggers_read_their_operations_directly(gee_conn, emulator):
    hook = EarthEngineHook(gcp_conn_id=gee_conn)
    watched = submit(hook, GET_EACH_UP_TO)

    async def scenario() -> OperationPoller:
        triggers = [GeeTaskTrigger([name], gcp_conn_id=gee_conn, poll_interval=0.2, timeout=1.0) for name in watched]
        events = await asyncio.gather(*(anext(t.run()) for t in triggers))
        assert [e.payload["status"] for e in events] == ["timeout"] * len(watched)
        return OperationPoller.for_connection(gee_conn, None, 0.2)

    poller = asyncio.run(scenario())
    assert emulator.stats()["requests"].get("ee.operations.list", 0) == 0
    assert poller.requests == poller.polls * len(watched)


def test_kill_cancels_only_when_asked(gee_conn, emulator):
    admin(emulator, "config", {"ee_concurrency": 0})
    hook = EarthEngineHook(gcp_conn_id=gee_conn)
    a, b = submit(hook, 2)
    asyncio.run(GeeTaskTrigger([a], gcp_conn_id=gee_conn, cancel_on_kill=True).on_kill())
    asyncio.run(GeeTaskTrigger([b], gcp_conn_id=gee_conn).on_kill())
    assert hook.get_operation(a)["metadata"]["state"] == "CANCELLED"
    assert hook.get_operation(b)["metadata"]["state"] == "PENDING"


def test_trigger_serializes_to_what_rebuilds_it():
    trigger = GeeTaskTrigger(
        ["projects/p/operations/X"], gcp_conn_id="c", poll_interval=3, timeout=9, cancel_on_kill=True
    )
    path, kwargs = trigger.serialize()
    assert path == "airflow_provider_gee.triggers.task.GeeTaskTrigger"
    assert GeeTaskTrigger(**kwargs).serialize() == (path, kwargs)


@pytest.mark.emulator(ee_concurrency=0)
def test_queue_trigger_counts_active_tasks_from_the_shared_listing(gee_conn, emulator):
    from airflow_provider_gee.triggers.task import GeeQueueTrigger

    hook = EarthEngineHook(gcp_conn_id=gee_conn)
    submit(hook, 4)
    project = f"projects/{hook.project}"

    async def scenario() -> dict:
        trigger = GeeQueueTrigger(project, 3, gcp_conn_id=gee_conn, poll_interval=0.2)
        waiting = asyncio.create_task(anext(trigger.run()))
        await asyncio.sleep(0.8)
        assert not waiting.done()  # 4 active >= 3
        admin(emulator, "config", {"ee_concurrency": 4, "task_seconds": 0.05})
        return (await asyncio.wait_for(waiting, timeout=10)).payload

    event = asyncio.run(scenario())
    assert event["status"] == "admitted" and event["active"] < 3
    path, kwargs = GeeQueueTrigger(project, 3, gcp_conn_id="c").serialize()
    assert GeeQueueTrigger(**kwargs).serialize() == (path, kwargs)


@pytest.mark.emulator(ee_concurrency=0)
def test_queue_trigger_counts_one_runs_tasks_and_gives_up_after_its_timeout(gee_conn, emulator):
    # two EE tasks of run token "abcd1234", one of another run: only the run's own are counted,
    # and a queue that never drains ends the wait with a timeout instead of holding a slot for ever
    from airflow_provider_gee.triggers.task import GeeQueueTrigger

    hook = EarthEngineHook(gcp_conn_id=gee_conn)
    for rid, description in (("q-1", "d.export.r1.abcd1234"), ("q-2", "d.export.r2.abcd1234"), ("q-3", "d.e.ffff0000")):
        export_constant(hook, rid, scale=5000, description=description)
    project = f"projects/{hook.project}"

    def first_event(limit: int, timeout: float) -> dict:
        trigger = GeeQueueTrigger(
            project, limit, gcp_conn_id=gee_conn, poll_interval=0.1, description_contains="abcd1234", timeout=timeout
        )
        return asyncio.run(asyncio.wait_for(anext(trigger.run()), timeout=30)).payload

    assert first_event(3, 5.0) == {"status": "admitted", "active": 2}  # 3 active, 2 of them the run's
    event = first_event(2, 0.5)
    assert event["status"] == "timeout" and "abcd1234" in event["message"] and "after 0.5 s" in event["message"]
    path, kwargs = GeeQueueTrigger(project, 2, gcp_conn_id="c", description_contains="t", timeout=9.0).serialize()
    assert GeeQueueTrigger(**kwargs).serialize() == (path, kwargs) and kwargs["timeout"] == 9.0


@pytest.mark.emulator(ee_concurrency=4, task_seconds=0.05)
def test_an_export_ending_in_the_triggerer_writes_no_key_the_task_runner_writes(gee_conn, emulator):
    """The success event of an export that ends in the triggerer carries its return value and no
    link: Airflow's task runner writes every link's XCom after the task deferred, and when the
    triggerer's insert of the same key meets that write, Airflow 3.3's triggerer exits."""
    from airflow.triggers.base import TaskSuccessEvent

    from airflow_provider_gee.operators.export import GeeExportOperator

    hook = EarthEngineHook(gcp_conn_id=gee_conn)
    name = export_constant(hook, "ends-in-triggerer", 1, scale=5000)["name"]
    base = {"tile_id": "t1", "kind": "image", "destination": "drive", "folder": "gee_exports", "prefix": "t1"}

    async def first_event():
        trigger = GeeTaskTrigger([name], gcp_conn_id=gee_conn, poll_interval=0.2, end_with_result=base)
        return await asyncio.wait_for(anext(trigger.run()), timeout=60)

    event = asyncio.run(first_event())
    assert isinstance(event, TaskSuccessEvent)
    assert list(event.xcoms) == ["return_value"]
    link_keys = {link.xcom_key for link in GeeExportOperator.operator_extra_links}
    assert len(link_keys) == 3 and not link_keys & set(event.xcoms)
    result = event.xcoms["return_value"]
    assert result["operation"] == name and result["state"] == "SUCCEEDED" and result["tile_id"] == "t1"
    assert result["drive_folder_id"]  # the folder EE wrote to is in the result (the harvest uses it)
