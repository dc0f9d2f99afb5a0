"""GeeTaskTrigger: wait, without blocking the triggerer, until EE operations end.

All triggers of one connection in a triggerer process share ONE poll per interval
(:class:`OperationPoller`): a few watched operations are read one by one, many are read from the
operations listing (paged, stopping as soon as every watched operation has been seen, and after
``LIST_MAX_PAGES`` pages at most), and whatever the listing did not show is read one by one. EE
lists only the caller's recent tasks, in no documented order, so nothing relies on the order.
1,000 waiting tiles thus cost a handful of requests per interval, not 1,000.

A listing or read that fails for good (403, a revoked key) ends every trigger that waits on it
with an ``error`` event carrying EE's message; transient failures back the poll interval off.

Airflow 3.3's shared trigger streams (``BaseEventTrigger.shared_stream_key``) do not fit: they are
meant for event-driven scheduling, and the shared stream does not know which operations its
subscribers wait for, so it could not stop paging early.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import aiohttp
from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent

from airflow_provider_gee.exceptions import EarthEngineError
from airflow_provider_gee.hooks.earth_engine import EarthEngineAsyncHook
from airflow_provider_gee.utils.operations import (
    ACTIVE_STATES,
    DEFAULT_WAIT_TIMEOUT,
    LIST_MAX_PAGES,
    TERMINAL_STATES,
    count_active,
    export_result,
    summarize,
)

log = logging.getLogger(__name__)

#: Up to this many watched operations are read with one GET each; more are read from the listing.
GET_EACH_UP_TO = 3
LIST_PAGE_SIZE = 500
#: the longest wait between polls after failures in a row
MAX_BACKOFF_SECONDS = 600.0


@dataclass(eq=False)
class _Watch:
    names: frozenset[str]
    #: projects whose queue length this watcher wants (``projects/P``)
    projects: frozenset[str] = frozenset()
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)


class OperationPoller:
    """One poll loop per (connection, impersonation, interval) in a triggerer process.

    :ivar requests: EE requests sent by this poller (for tests and benchmarks).
    :ivar polls: poll rounds done.
    """

    _pollers: ClassVar[dict[tuple[Any, ...], OperationPoller]] = {}

    def __init__(self, gcp_conn_id: str, impersonation_chain: str | Sequence[str] | None, interval: float) -> None:
        self.hook = EarthEngineAsyncHook(gcp_conn_id=gcp_conn_id, impersonation_chain=impersonation_chain)
        self.interval = interval
        self.watches: set[_Watch] = set()
        self.requests = 0
        self.polls = 0
        self.loop = asyncio.get_running_loop()
        self._task: asyncio.Task | None = None

    @classmethod
    def for_connection(
        cls, gcp_conn_id: str, impersonation_chain: str | Sequence[str] | None, interval: float
    ) -> OperationPoller:
        """The poller of the running event loop for this connection (created on first use)."""
        chain = tuple(impersonation_chain) if isinstance(impersonation_chain, (list, tuple)) else impersonation_chain
        loop = asyncio.get_running_loop()
        # pollers of loops that have closed (tests and ``dag.test()`` run one loop per trigger)
        for stale in [k for k, p in cls._pollers.items() if p.loop.is_closed()]:
            del cls._pollers[stale]
        key = (id(loop), gcp_conn_id, chain, float(interval))
        if key not in cls._pollers:
            cls._pollers[key] = cls(gcp_conn_id, impersonation_chain, interval)
        return cls._pollers[key]

    def watch(self, names: Sequence[str] = (), projects: Sequence[str] = ()) -> _Watch:
        w = _Watch(frozenset(names), frozenset(projects))
        self.watches.add(w)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="gee-operation-poller")
        return w

    def unwatch(self, w: _Watch) -> None:
        self.watches.discard(w)

    async def _run(self) -> None:
        # No await between the last look at ``self.watches`` and returning: a watcher added while
        # the session closes is seen by the outer loop, and one added after finds this task done
        # and starts a new one (``watch``), so no watcher is ever left unpolled.
        failures = 0
        while self.watches:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
                while self.watches:
                    try:
                        await self.poll_once(session)
                        failures = 0
                    except Exception:  # a poll that fails must not end the loop for everybody
                        failures += 1
                        log.exception("Polling Earth Engine operations failed (%d in a row); backing off", failures)
                    await asyncio.sleep(self.delay(failures))

    def delay(self, failures: int) -> float:
        """Seconds until the next poll: the interval, doubled per failed poll in a row, at most
        ``MAX_BACKOFF_SECONDS`` (or the interval, when that is longer)."""
        return max(self.interval, min(self.interval * 2**failures, MAX_BACKOFF_SECONDS))

    async def _get(self, session: aiohttp.ClientSession, method: str, path: str, **kw: Any) -> dict[str, Any]:
        self.requests += 1
        return await self.hook.request(session, method, path, **kw)

    async def poll_once(self, session: aiohttp.ClientSession) -> None:
        """Read every watched operation once and hand each to its watchers."""
        self.polls += 1
        watches = list(self.watches)
        wanted = set().union(*(w.names for w in watches))
        counted = set().union(*(w.projects for w in watches))
        found: dict[str, dict[str, Any]] = {}
        errors: dict[str, str] = {}
        queues: dict[str, dict[str, Any]] = {}
        by_project: dict[str, set[str]] = defaultdict(set)
        if len(wanted) > GET_EACH_UP_TO:
            for name in wanted:
                by_project[name.split("/operations/")[0]].add(name)
        for project in counted:
            by_project.setdefault(project, set())
        for project, names in by_project.items():
            # one listing serves both the watched operations and the queue length. EE lists the
            # caller's tasks in no documented order: the queue count reads every page (bounded),
            # and what the listing did not show is read one by one below
            params: dict[str, Any] = {"pageSize": LIST_PAGE_SIZE}
            active = 0
            described: list[str] = []  # the active tasks' descriptions, for watchers that count some
            try:
                for _ in range(LIST_MAX_PAGES):
                    page = await self._get(session, "GET", f"{project}/operations", params=params)
                    ops = page.get("operations", [])
                    found.update((op["name"], op) for op in ops if op.get("name") in names)
                    active += count_active(ops)
                    described += [
                        str(op.get("metadata", {}).get("description") or "")
                        for op in ops
                        if op.get("metadata", {}).get("state") in ACTIVE_STATES
                    ]
                    if not page.get("nextPageToken") or not (names - found.keys() or project in counted):
                        break
                    params = {"pageSize": LIST_PAGE_SIZE, "pageToken": page["nextPageToken"]}
            except EarthEngineError as exc:
                if exc.retryable:
                    raise  # the whole poll backs off
                log.error("Listing the EE operations of %s failed for good: %s", project, exc.message)
                errors.update((name, exc.message) for name in names)
                errors[project] = exc.message
                continue
            if project in counted:
                queues[project] = {"active": active, "descriptions": described}
        for name in wanted - found.keys() - errors.keys():  # few watched, or not in the listing
            try:
                found[name] = await self._get(session, "GET", name)
            except EarthEngineError as exc:
                if exc.retryable:
                    log.warning("Reading %s failed transiently: %s", name, exc.message)
                else:
                    errors[name] = exc.message
        for w in watches:
            for name in w.names:
                if name in found:
                    w.queue.put_nowait((name, found[name], None))
                elif name in errors:
                    w.queue.put_nowait((name, None, errors[name]))
            for project in w.projects:
                if project in queues:
                    w.queue.put_nowait((project, queues[project], None))
                elif project in errors:
                    w.queue.put_nowait((project, None, errors[project]))


class GeeTaskTrigger(BaseTrigger):
    """Fire when the given EE operations have ended (or one failed, with ``fail_fast``).

    Events: ``{"status": "success" | "failed" | "error" | "timeout", "operations": {name: summary},
    "message": str}``; summaries come from :func:`~airflow_provider_gee.utils.operations.summarize`.
    With ``end_with_result``, a success is instead a ``TaskSuccessEvent``: the task ends in the
    triggerer, with the export's result as its return value, without resuming on a worker.

    :param operations: full operation names (``projects/P/operations/ID``).
    :param gcp_conn_id: the Airflow connection id.
    :param impersonation_chain: optional service account(s) to impersonate.
    :param poll_interval: seconds between polls (triggers with the same interval share polls).
    :param timeout: seconds after which the trigger gives up with a ``timeout`` event (default:
        EE's own 10-day limit on a task, plus an hour; ``None`` never).
    :param fail_fast: fire as soon as one operation ends in FAILED or CANCELLED.
    :param cancel_on_kill: cancel the operations when a user kills the deferred task.
    :param end_with_result: the operator's part of an export's result (one operation only); on
        success it is completed by :func:`~airflow_provider_gee.utils.operations.export_result` and
        written to XCom by the triggerer (as the task's return value only).
    :param event_extra: handed back as ``extra`` in every event: what the resumed method needs
        (a split tile's plan). Unlike ``defer(kwargs=...)`` it also reaches the method under
        ``dag.test()``, which replaces the deferral's kwargs with the event (Airflow 3.0-3.3).
    """

    def __init__(
        self,
        operations: Sequence[str],
        gcp_conn_id: str = "google_cloud_default",
        impersonation_chain: str | Sequence[str] | None = None,
        poll_interval: float = 10.0,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        fail_fast: bool = True,
        cancel_on_kill: bool = False,
        end_with_result: dict[str, Any] | None = None,
        event_extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if end_with_result is not None and len(operations) != 1:
            raise ValueError(f"end_with_result needs exactly one operation, got {len(operations)}.")
        self.operations = list(operations)
        self.gcp_conn_id = gcp_conn_id
        self.impersonation_chain = impersonation_chain
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.fail_fast = fail_fast
        self.cancel_on_kill = cancel_on_kill
        self.end_with_result = end_with_result
        self.event_extra = event_extra

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "operations": self.operations,
                "gcp_conn_id": self.gcp_conn_id,
                "impersonation_chain": self.impersonation_chain,
                "poll_interval": self.poll_interval,
                "timeout": self.timeout,
                "fail_fast": self.fail_fast,
                "cancel_on_kill": self.cancel_on_kill,
                "end_with_result": self.end_with_result,
                "event_extra": self.event_extra,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        poller = OperationPoller.for_connection(self.gcp_conn_id, self.impersonation_chain, self.poll_interval)
        watch = poller.watch(self.operations)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout if self.timeout else None
        latest: dict[str, dict[str, Any]] = {}
        ended: dict[str, dict[str, Any]] = {}
        try:
            while len(ended) < len(self.operations):
                wait = None if deadline is None else max(0.0, deadline - loop.time())
                try:
                    name, op, error = await asyncio.wait_for(watch.queue.get(), timeout=wait)
                except TimeoutError:
                    summaries = {n: summarize(latest[n]) for n in latest}
                    message = (
                        f"{len(self.operations) - len(ended)} EE operation(s) still running after {self.timeout} s"
                    )
                    yield self._event({"status": "timeout", "operations": summaries, "message": message})
                    return
                if error is not None:
                    yield self._event({"status": "error", "operations": {}, "message": f"{name}: {error}"})
                    return
                self._log_change(name, latest.get(name), op)
                latest[name] = op
                state = op.get("metadata", {}).get("state")
                if state not in TERMINAL_STATES or name in ended:
                    continue
                ended[name] = summarize(op)
                if state != "SUCCEEDED" and self.fail_fast:
                    message = f"EE task {name} ended {state}: {ended[name].get('error', 'no message')}"
                    yield self._event({"status": "failed", "operations": ended, "message": message})
                    return
            failed = [n for n, s in ended.items() if s["state"] != "SUCCEEDED"]
            if not failed and self.end_with_result is not None:
                yield self._success_event(ended[self.operations[0]])
                return
            status = "failed" if failed else "success"
            message = f"{len(failed)} of {len(ended)} EE operation(s) did not succeed" if failed else ""
            yield self._event({"status": status, "operations": ended, "message": message})
        finally:
            poller.unwatch(watch)

    def _event(self, payload: dict[str, Any]) -> TriggerEvent:
        return TriggerEvent({**payload, "extra": self.event_extra} if self.event_extra is not None else payload)

    def _success_event(self, summary: dict[str, Any]) -> TaskSuccessEvent:
        """End the task here, with its return value.

        Only ``return_value``: never a key the task runner also writes, such as a link's. Airflow's
        task runner writes every link's XCom after the task deferred, while this trigger may
        already be firing (an EE task that ended at once, a retry re-attached to a finished one);
        when the triggerer's insert of the same key meets that write, PostgreSQL refuses one of
        them (``xcom_pkey``) and Airflow 3.3's triggerer exits (found at 2,000 tiles of B5). The
        Drive folder link stays the folder search it was while the export waited.
        """
        result = export_result(self.end_with_result or {}, summary)
        self.log.info("EE task %s SUCCEEDED: the task ends here, without resuming on a worker", summary["name"])
        return TaskSuccessEvent(xcoms={"return_value": result})

    def _log_change(self, name: str, before: dict[str, Any] | None, after: dict[str, Any]) -> None:
        old = (before or {}).get("metadata", {})
        new = after.get("metadata", {})
        if (old.get("state"), old.get("progress")) != (new.get("state"), new.get("progress")):
            self.log.info(
                "%s (%s): %s %.0f%%", new.get("description"), name.rsplit("/", 1)[-1], new.get("state"),
                100 * float(new.get("progress") or 0),
            )  # fmt: skip

    async def on_kill(self) -> None:
        if not self.cancel_on_kill:
            return
        hook = EarthEngineAsyncHook(gcp_conn_id=self.gcp_conn_id, impersonation_chain=self.impersonation_chain)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            for name in self.operations:
                with contextlib.suppress(EarthEngineError):
                    await hook.request(session, "POST", f"{name}:cancel", json={})
                    self.log.info("Cancelled EE task %s", name)


class GeeQueueTrigger(BaseTrigger):
    """Fire once the connection identity's queue in a project (its PENDING + RUNNING tasks: EE
    lists only the caller's own) is below ``limit``: admission control before submitting. Shares
    the listing of :class:`OperationPoller`.

    Events: ``{"status": "admitted", "active": n}``; ``{"status": "error", "message": ...}`` when
    the listing fails for good; ``{"status": "timeout", "message": ...}`` after ``timeout`` seconds
    (a queue that never drains must not hold a pool slot for ever).

    :param project: ``projects/P``.
    :param limit: fire when fewer tasks than this are active.
    :param gcp_conn_id: the Airflow connection id.
    :param impersonation_chain: optional service account(s) to impersonate.
    :param poll_interval: seconds between polls.
    :param description_contains: count only the active tasks whose description holds this text
        (a run's token: the run's own EE tasks); ``None``: every active task.
    :param timeout: seconds to wait at most (``None``: no limit).
    """

    def __init__(
        self,
        project: str,
        limit: int,
        gcp_conn_id: str = "google_cloud_default",
        impersonation_chain: str | Sequence[str] | None = None,
        poll_interval: float = 10.0,
        description_contains: str | None = None,
        timeout: float | None = None,
    ) -> None:
        super().__init__()
        self.project = project
        self.limit = limit
        self.gcp_conn_id = gcp_conn_id
        self.impersonation_chain = impersonation_chain
        self.poll_interval = poll_interval
        self.description_contains = description_contains
        self.timeout = timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "project": self.project,
                "limit": self.limit,
                "gcp_conn_id": self.gcp_conn_id,
                "impersonation_chain": self.impersonation_chain,
                "poll_interval": self.poll_interval,
                "description_contains": self.description_contains,
                "timeout": self.timeout,
            },
        )

    def _active(self, queue: dict[str, Any]) -> int:
        if self.description_contains is None:
            return int(queue["active"])
        return sum(self.description_contains in d for d in queue.get("descriptions", []))

    async def run(self) -> AsyncIterator[TriggerEvent]:
        poller = OperationPoller.for_connection(self.gcp_conn_id, self.impersonation_chain, self.poll_interval)
        watch = poller.watch(projects=[self.project])
        last = None
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        what = f"{self.project}" + (f" ({self.description_contains!r})" if self.description_contains else "")
        try:
            while True:
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    _, queue, error = await asyncio.wait_for(watch.queue.get(), wait)
                except TimeoutError:
                    message = f"EE queue of {what} still held {last} active tasks (limit {self.limit})"
                    yield TriggerEvent({"status": "timeout", "message": f"{message} after {self.timeout} s"})
                    return
                if error is not None:
                    yield TriggerEvent({"status": "error", "message": f"{self.project}: {error}"})
                    return
                active = self._active(queue)
                if active < self.limit:
                    yield TriggerEvent({"status": "admitted", "active": active})
                    return
                if active != last:
                    self.log.info("EE queue of %s: %d active tasks (limit %d)", what, active, self.limit)
                    last = active
        finally:
            poller.unwatch(watch)
