"""Submitting the export's EE task: requestId generations, the checks before submitting (budget,
Drive storage, EE's queue, EE tasks a killed try left running) and what EE's refusals mean."""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import Context

from airflow_provider_gee.exceptions import (
    EarthEngineError,
    EarthEngineRejected,
    EarthEngineTaskFailed,
    EarthEngineTooBig,
    EecuBudgetSpent,
    GeeConfigurationError,
)
from airflow_provider_gee.operators.base import default_deferrable
from airflow_provider_gee.operators.export.results import ExportResults
from airflow_provider_gee.utils.naming import sanitize_description
from airflow_provider_gee.utils.operations import ACTIVE_STATES, LIST_MAX_PAGES, summarize

#: connections (and impersonation chains) whose identity was seen to have Drive storage, per process
_DRIVE_STORAGE_OK: set[tuple[str, str, str | None]] = set()
#: requestIds tried in one submission when EE refuses a spent one
MAX_GENERATION_STEPS = 3
#: EE's refusal of a requestId used before with another body (the wording is not documented)
REQUEST_ID_REFUSED = re.compile(r"request[ _-]?id", re.IGNORECASE)
#: task instance states that hold a pool slot (in a pool created with include_deferred)
SLOT_STATES = frozenset({"queued", "running", "deferred"})
#: task instance states whose EE task may run on without them: killed (waiting to retry) or failed
LEFT_BEHIND_STATES = frozenset({"up_for_retry", "failed", "restarting"})


class TooBig(Exception):
    """EE refused the tile (or part) for its size and splitting applies: ``failure`` says which EE
    task (if any), EE's message and what it cost."""

    def __init__(self, failure: dict[str, Any]) -> None:
        super().__init__(failure.get("error"))
        self.failure = failure


class ExportSubmission(ExportResults):
    """Submitting the EE task, once per requestId generation, after the checks."""

    def submit_job(self, context: Context) -> dict[str, Any]:
        # The generation follows the stored (failed) operation, so repeated crashes around a
        # resubmission keep asking EE with the same requestId and get the same new operation. The
        # mixin calls submit_job after get_job_status saw that operation, or when none is stored.
        self._set_run(context)  # also when called on its own: the names must be the run's
        prior = self._stored
        generation = int(prior["generation"]) + 1 if prior else 0
        self._admit(context)
        self._hold_for_left_behind(context)
        if self.destination == "drive":
            self._check_drive_storage()
        description = self.task_description(context)
        if self.max_eecu_seconds is not None:
            self._check_budget(context, description)
        return self._start(context, description, generation)

    def _start(self, context: Context, description: str, generation: int) -> dict[str, Any]:
        """Submit the export (of the tile, or of the part being exported) with the requestId of
        ``generation``, or of a later one when EE refuses it as spent; ``{operation, generation,
        request_id}``."""
        self.hook.initialize_ee()
        ee_object = self._ee_object(context)
        self._inputs = self._read_inputs(ee_object)
        # a lower bound of the EE task's creation: its files are never older (a forgotten EE task's
        # harvest has nothing else to tell its files from older ones of the same name)
        submitted_at = datetime.now(UTC).isoformat()
        for _ in range(MAX_GENERATION_STEPS):
            rid = self._request_id(context, generation)
            try:
                op = summarize(
                    self.hook.start_export(
                        ee_object, kind=self.export_type, destination=self.destination, request_id=rid,  # type: ignore[arg-type]
                        workload_tag=self._workload_tag(), **self._export_args(description),
                    )
                )  # fmt: skip
                self.log.info("Submitted EE task %s (%s, requestId %s)", op["name"], description, rid)
                break
            except EarthEngineError as exc:
                if exc.retryable:
                    raise  # an Airflow retry asks again with the same requestId: no duplicate
                earlier = self._refused_submission(context, description, rid, exc)
                if earlier is not None:
                    op = earlier
                    break
                generation += 1  # the requestId is spent (its task failed or EE forgot it): the next one
        else:
            raise EarthEngineRejected(f"Earth Engine refused {MAX_GENERATION_STEPS} requestIds for {description!r}.")
        self._operation = op
        self._persist_links(context, op["name"])
        # stored with the operation: a later try uses it only for the same tile and arguments
        return {
            "operation": op["name"], "generation": generation, "request_id": rid, "inputs": self._inputs,
            "tile_id": self.tile_id, "fingerprint": self._fingerprint(),
            "submitted_at": op.get("create_time") or submitted_at,  # EE's clock where it says
        }  # fmt: skip

    def _read_inputs(self, ee_object: Any) -> list[str]:
        """The full names of the EE assets the export's expression loads (for lineage; never fails
        the export)."""
        try:
            if self.asset is not None:
                return [self.hook.input_asset_name(self.asset)]
            from ee import serializer

            from airflow_provider_gee.utils.lineage import ee_inputs

            return [self.hook.input_asset_name(i) for i in ee_inputs(serializer.encode(ee_object, for_cloud_api=True))]
        except Exception as exc:  # lineage is a by-product: an odd expression must not stop the export
            self.log.debug("Could not read the export's inputs: %s", exc)
            return []

    def _refused_submission(
        self, context: Context, description: str, rid: str, exc: EarthEngineError
    ) -> dict[str, Any] | None:
        """EE refused a submission for good. Either the requestId was used before with another
        body (a retry's ``build`` need not give the same expression; EE may refuse such a repeat),
        and then this task instance's EE task is taken from EE's listing, or the next requestId is
        to be tried (returns ``None``); or the export itself was refused: fail without retries."""
        own = self._own_operations(context, description)
        if own and own[0]["state"] not in ("FAILED", "CANCELLED"):
            self.log.warning(
                "EE refused requestId %s (%s); this task instance's EE task %s (%s) is taken instead",
                rid, exc.message, own[0]["name"], own[0]["state"],
            )  # fmt: skip
            return own[0]
        if REQUEST_ID_REFUSED.search(exc.message):
            self.log.warning("EE refused requestId %s (%s): submitting with the next one", rid, exc.message)
            return None
        if self._splittable(exc.message):  # e.g. "Request payload size exceeds the limit"
            raise TooBig({"tile_id": self.tile_id, "operation": None, "error": exc.message, "eecu_seconds": 0})
        raise EarthEngineRejected(f"Earth Engine rejected export {description!r}: {exc.message}") from exc

    def _own_operations(self, context: Context, description: str | None = None) -> list[dict[str, Any]]:
        """This task instance's EE tasks in EE's listing, newest created first: the same description,
        created since its DAG run started (EE lists the caller's recent tasks, in no set order)."""
        description = description or self.task_description(context)
        run_start = getattr(context.get("dag_run"), "start_date", None)
        own = [
            op
            for op in (summarize(o) for o in self.hook.list_operations())
            if op["description"] == description and _created_since(op, run_start)
        ]
        return sorted(own, key=lambda op: op.get("create_time") or "", reverse=True)

    def _check_budget(self, context: Context, description: str) -> None:
        """Fail before submitting once the run's exports have used ``max_eecu_seconds``."""
        dag_run = context.get("dag_run")
        run_start = getattr(dag_run, "start_date", None)
        prefix = f"{sanitize_description(self.dag_id)}."
        token = self._run_token if self.run_scoped_names else ""

        def this_run(text: str) -> bool:  # the token tells this run's EE tasks from other runs' in flight
            return token in text if token else text.startswith(prefix)

        used = [
            float(op["eecu_seconds"])
            for op in (summarize(o) for o in self.hook.list_operations())
            if this_run(op["description"] or "")
            and _created_since(op, run_start)
            and op.get("eecu_seconds") is not None
        ]
        spent, counted = math.fsum(used), len(used)
        budget = float(self.max_eecu_seconds)  # type: ignore[arg-type]
        # reached also when equal but for the last bits (EE's figures are decimals, summed in any order)
        if spent >= budget or math.isclose(spent, budget, rel_tol=1e-9):
            raise EecuBudgetSpent(
                f"EECU budget of run {getattr(dag_run, 'run_id', '?')} spent: {spent:,.1f} of {budget:,.1f} "
                f"EECU-s used by {counted} export(s) of DAG {self.dag_id!r}; not submitting {description!r}. "
                "Raise max_eecu_seconds and clear the failed tiles, or export fewer or smaller tiles."
            )
        self.log.info("EECU budget: %.1f of %.1f EECU-s used by %d export(s) of this run", spent, budget, counted)

    def _check_drive_storage(self) -> None:
        """Fail before submitting when the identity has no Drive storage of its own.

        EE writes a Drive export as the caller, and Google gives service accounts no Drive storage
        (since 2025), so their Drive exports would fail in EE after queueing. Checked once per
        connection and process (Drive ``about``), as the answer does not change during a run.
        """
        from googleapiclient.errors import HttpError

        drive = self.drive_hook
        key = (self.gcp_conn_id, str(self.impersonation_chain), drive.drive_api_url)
        if key in _DRIVE_STORAGE_OK:
            return
        try:
            quota = drive.storage_quota()
        except HttpError as exc:
            if exc.resp.status != 403 or b"insufficient" not in (exc.content or b"").lower():
                raise
            raise GeeConfigurationError(
                f"Connection {self.gcp_conn_id!r} ({drive.identity_kind}) has no Drive scope, so EE could not write "
                "the Drive export as it: tokens from the metadata server carry the VM's scopes (Cloud Platform only "
                "by default) and gcloud's own login is not granted Drive. Export to Cloud Storage (destination='gcs', "
                "bucket='...'), or give the connection a person's EE credentials (extra 'ee_credentials', the file "
                "`earthengine authenticate` writes) or a login with your own OAuth client "
                "(gcloud auth application-default login --client-id-file=... with the Drive scope)."
            ) from None
        if quota["limit"] == 0:  # none at all (a full Drive may free up as harvests run: EE says so then)
            raise GeeConfigurationError(
                f"Connection {self.gcp_conn_id!r} has no Drive storage (limit 0 bytes): EE writes Drive exports "
                "as the caller, and service accounts have no Drive "
                "storage. Export to Cloud Storage (destination='gcs', bucket='...'), or use a person's credentials "
                "for Drive (extra 'ee_credentials': the file `earthengine authenticate` writes)."
            )
        _DRIVE_STORAGE_OK.add(key)

    def _export_tasks(self) -> dict[str, bool]:
        """The DAG's export tasks (any pool: their EE tasks carry the run's token), by task id:
        whether each waits for EE deferred."""
        dag = self.dag if self.has_dag() else None
        tasks = {}
        for task in dag.tasks if dag else []:
            if task.task_type != type(self).__name__:
                continue
            # a mapped task keeps what it was given in partial_kwargs; None is Airflow's default
            given = getattr(task, "partial_kwargs", {}).get("deferrable", getattr(task, "deferrable", None))
            tasks[task.task_id] = default_deferrable() if given is None else bool(given)
        return tasks or {self.task_id: self.deferrable}

    def _left_behind(self, context: Context) -> tuple[int, int, int] | None:
        """``(EE tasks of this run in flight, export task instances of the run holding a slot,
        exports of the run submitting ahead of this one)`` when an export task instance of the run
        was killed or failed (its EE task may run on without it); ``None`` when none was, or
        Airflow cannot say. A count of such task instances comes first (one small query): only
        then are the run's states and EE's listing read, in that order, so that an export that
        submitted and deferred before the states were read has its EE task in the listing.

        Exports "submitting ahead" are the run's deferrable exports in the worker ("running")
        whose key (Airflow's ``task_id`` or ``task_id_mapindex``) sorts before this one's: a
        deferrable export waits for EE deferred, so in the worker it is (for seconds) at its
        submit point, and exports that check at the same moment take the room left in key order
        instead of all taking it. Exports that wait in the worker are not counted: they may be
        waiting on an EE task already in the count.
        """
        ti = context["ti"]
        if not (hasattr(ti, "get_ti_count") and hasattr(ti, "get_task_states")):
            return None
        tasks = self._export_tasks()
        try:
            left = ti.get_ti_count(
                dag_id=ti.dag_id, task_ids=list(tasks), run_ids=[ti.run_id], states=sorted(LEFT_BEHIND_STATES)
            )
            if not left:
                return None
            states = ti.get_task_states(dag_id=ti.dag_id, task_ids=list(tasks), run_ids=[ti.run_id])
        except Exception as exc:  # an Airflow without these calls, or dag.test(): no check, as before
            self.log.debug("Could not read the run's export states: %s", exc)
            return None
        run_states = {key: str(state) for key, state in (states or {}).get(ti.run_id, {}).items()}
        holders = sum(state in SLOT_STATES for state in run_states.values())
        map_index = getattr(ti, "map_index", -1)
        me = ti.task_id if map_index is None or map_index < 0 else f"{ti.task_id}_{map_index}"

        def submitting(key: str) -> bool:  # a deferrable export's task instance
            return tasks.get(key if key in tasks else key.rpartition("_")[0], False)

        ahead = sum(key < me for key, state in run_states.items() if state == "running" and submitting(key))
        active = sum(
            1
            for op in self.hook.list_operations(500, max_pages=LIST_MAX_PAGES)
            if op.get("metadata", {}).get("state") in ACTIVE_STATES
            and self._run_token in (op.get("metadata", {}).get("description") or "")
        )
        return active, holders, ahead

    def _hold_for_left_behind(self, context: Context) -> None:
        """Keep "EE tasks in flight never exceed the pool" after a kill.

        A task process killed while its EE task runs frees its pool slot at once, and its EE task
        runs on until the retry re-attaches. Before submitting, the export counts its run's EE tasks
        in flight (by the run's token) against the run's export task instances that hold a slot
        (itself included): each holder has at most one EE task, so while the EE tasks are not fewer
        than the holders, one was left behind by a killed try, and this export waits for one to
        end (deferred, holding its slot; or in the worker). When there is room, but not for the
        exports submitting ahead of it (:meth:`_left_behind`), it waits in the worker for them:
        seconds. Only the run's own EE tasks are seen (other runs' and DAGs' are not): a bound for
        the run's own kills, checked only once one of its task instances was killed or failed.
        """
        if not (self.run_scoped_names and self._run_token):
            return
        deadline = time.monotonic() + self.wait_timeout if self.wait_timeout is not None else None
        while (seen := self._left_behind(context)) is not None and seen[0] + seen[2] >= seen[1]:
            active, holders, ahead = seen
            if active < holders:
                self.log.info(
                    "Room for %d EE task(s) of this run, and %d export(s) ahead of this one submitting: waiting %s s",
                    holders - active, ahead, self.poll_interval,
                )  # fmt: skip
            else:
                self.log.warning(
                    "%d EE task(s) of this run are in flight for %d task instance(s) holding the pool's slots: a "
                    "killed try left its EE task running (its retry re-attaches to it). Waiting for one to end before "
                    "submitting, so that EE tasks in flight stay within the pool",
                    active, holders,
                )  # fmt: skip
                if self.deferrable:
                    from airflow_provider_gee.triggers.task import GeeQueueTrigger

                    self.defer(
                        trigger=GeeQueueTrigger(
                            f"projects/{self.hook.project}", holders, gcp_conn_id=self.gcp_conn_id,
                            impersonation_chain=self.impersonation_chain, poll_interval=self.poll_interval,
                            description_contains=self._run_token, timeout=self.wait_timeout,
                        ),
                        method_name="execute",
                    )  # fmt: skip
            if deadline is not None and time.monotonic() > deadline:
                raise EarthEngineError(
                    f"Waited {self.wait_timeout} s for room in the pool (EE tasks a killed try left running, or "
                    "exports of the run submitting ahead); nothing was submitted."
                )
            time.sleep(self.poll_interval)

    def _admit(self, context: Context) -> None:
        """Admission control: defer until EE's queue is below ``max_ee_queue``, then run again."""
        if self.max_ee_queue is None:
            return
        active = self.hook.count_active_operations()
        if active < self.max_ee_queue:
            return
        self.log.info(
            "EE holds %d active tasks for %s (max_ee_queue=%d): waiting", active, self.hook.project, self.max_ee_queue
        )
        from airflow_provider_gee.triggers.task import GeeQueueTrigger

        self.defer(
            trigger=GeeQueueTrigger(
                f"projects/{self.hook.project}", self.max_ee_queue, gcp_conn_id=self.gcp_conn_id,
                impersonation_chain=self.impersonation_chain, poll_interval=self.poll_interval,
                timeout=self.wait_timeout,
            ),
            method_name="execute",
        )  # fmt: skip

    def _splittable(self, message: str | None) -> bool:
        """Whether EE's ``message`` says the tile is too big and splitting it is allowed here."""
        from airflow_provider_gee.utils.splitting import is_size_error

        splits = self.split_on_error and self.max_split_depth > 0 and self.tile is not None and self.region is None
        return splits and is_size_error(message)

    def _failure(self, op: dict[str, Any]) -> dict[str, Any]:
        """What is kept of an EE task refused for its size (its cost counts toward the tile's)."""
        return {
            "tile_id": self.tile_id, "operation": op.get("name"), "error": op.get("error") or op.get("state"),
            "eecu_seconds": op.get("eecu_seconds") or 0,
        }  # fmt: skip

    @staticmethod
    def _task_failed(op: dict[str, Any], fallback: str = "", note: str = "") -> EarthEngineTaskFailed:
        """The error for an EE task that did not succeed, with EE's message; one refused for its
        size (not split, or still too big) fails without retries: it would fail the same way."""
        from airflow_provider_gee.utils.splitting import is_size_error

        message = (op.get("error") or fallback or op["state"]) + note
        kind = EarthEngineTooBig if is_size_error(op.get("error")) else EarthEngineTaskFailed
        return kind(message, operation=op.get("name") or "", state=op["state"])

    def _raise_if_too_big(self, op: dict[str, Any]) -> None:
        if op.get("state") == "FAILED" and self._splittable(op.get("error")):
            raise TooBig(self._failure(op))


def _created_since(op: dict[str, Any], start: datetime | None) -> bool:
    """Whether EE created the operation at or after ``start`` (RFC 3339 ``createTime``)."""
    if start is None or not op.get("create_time"):
        return True
    created = datetime.fromisoformat(str(op["create_time"]).replace("Z", "+00:00"))
    return created >= start
