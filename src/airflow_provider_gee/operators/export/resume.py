"""The resume protocol: what a retry or a resumed task finds of its EE task (the task state store
on Airflow 3.3+, EE's listing before), forgotten operations, and waiting for the EE task."""

from __future__ import annotations

import time
from typing import Any

from airflow.sdk import Context

from airflow_provider_gee.exceptions import EarthEngineError, GeeConfigurationError
from airflow_provider_gee.links.earth_engine import EarthEngineTaskLink, task_url
from airflow_provider_gee.operators.export.submission import ExportSubmission
from airflow_provider_gee.utils.operations import ACTIVE_STATES, TERMINAL_STATES, export_extensions, summarize
from airflow_provider_gee.utils.task_state import TaskState


class ExportResume(ExportSubmission):
    """Finding, re-attaching to and waiting for the export's EE task."""

    def _execute_without_state_store(self, context: Context) -> dict[str, Any]:
        """Airflow < 3.3 has no task state store, so a retry finds its operations in EE instead.

        The first try submits generation 0. A later try (or a cleared task) lists EE's operations
        and takes this task instance's own: the same description, created since its DAG run
        started. The newest decides as the stored operation does on 3.3+ (running: re-attach;
        SUCCEEDED: done; FAILED/CANCELLED: submit the next generation). If the listing lags behind
        a submission, the resubmission carries that submission's ``requestId`` and EE returns the
        operation it already started instead of a second one.
        """
        ti = context["ti"]
        self._set_run(context)
        own: list[dict[str, Any]] = []
        # a description shared by several tiles would make another tile's EE task look like ours
        own_description = self.description is None or self.tile is None or "{tile_id}" in self.description
        if (ti.try_number or 1) > 1 and not own_description:
            self.log.warning(
                "Airflow < 3.3 and description=%r is the same for every tile: not looking up earlier EE tasks "
                "(only EE's requestId de-duplication guards this retry); put {tile_id} in the description",
                self.description,
            )
        elif (ti.try_number or 1) > 1:
            own = self._own_operations(context)
            self.log.info("Airflow < 3.3: found %d earlier EE task(s) of this task instance in EE", len(own))
        if own:
            latest = own[0]
            self._operation = latest
            self._stored = {"operation": latest["name"], "generation": len(own) - 1}
            if latest["state"] in ACTIVE_STATES:
                self.log.info("Re-attaching to EE task %s (%s)", latest["name"], latest["state"])
                self._persist_links(context, latest["name"])
                return self.poll_until_complete(self._stored, context)  # type: ignore[return-value]
            if latest["state"] == "SUCCEEDED":
                self.log.info("EE task %s already SUCCEEDED: not submitting again", latest["name"])
                return self._result(context, latest)
            self._raise_if_too_big(latest)  # split again: the parts' requestIds find their EE tasks
        external_id = self.submit_job(context)
        result = self.poll_until_complete(external_id, context)
        return result if result is not None else self.get_job_result(external_id, context)

    def _result_ended_in_trigger(self, context: Context) -> dict[str, Any]:
        """The result of an export whose trigger ended the task (``end_from_trigger``), rebuilt
        from its EE task: ``dag.test()`` resumes such a task with nothing but its state."""
        stored = TaskState(context).get(self.external_id_key) or {}
        name = stored.get("operation")
        self._inputs = stored.get("inputs", self._inputs)
        # no task state store (before 3.3): the task instance's newest EE task, when its description
        # is its own (one shared by every tile would find another tile's)
        own_description = self.description is None or self.tile is None or "{tile_id}" in self.description
        if not name and own_description:
            own = self._own_operations(context)
            name = own[0]["name"] if own else None
        op = summarize(self.hook.get_operation(name)) if name else None
        if op is None or op["state"] != "SUCCEEDED":
            raise EarthEngineError(
                "The export ended in the triggerer, but its succeeded EE task is not known here "
                f"({op['name'] + ' is ' + op['state'] if op else 'none found'}): clear the task to export again."
            )
        return self._result(context, op)

    def get_job_status(self, external_id: Any, context: Context) -> str:
        if not self._is_own(external_id, "EE task"):
            self._stored = None  # not this export's: a fresh submission (its own requestId), generation 0
            self._cancel_discarded(external_id.get("operation") if isinstance(external_id, dict) else None)
            return "DISCARDED"
        self._stored = external_id
        self._inputs = external_id.get("inputs", self._inputs)
        try:
            self._operation = summarize(self.hook.get_operation(external_id["operation"]))
        except EarthEngineError as exc:
            if exc.status_code != 404:
                raise
            return self._forgotten_operation(external_id["operation"], context)
        self.log.info("Stored EE task %s is %s", external_id["operation"], self._operation["state"])
        self._raise_if_too_big(self._operation)  # it failed for its size before the split was kept
        if self._operation["state"] in ACTIVE_STATES:
            self._persist_links(context, external_id["operation"])
        elif self._operation["state"] == "SUCCEEDED":  # a retry that finds it done links it too
            url = task_url(self.hook.api_url, self.hook.uses_google, external_id["operation"])
            EarthEngineTaskLink.persist(context, url=url)
        return str(self._operation["state"])

    def _is_own(self, stored: Any, what: str) -> bool:
        """Whether stored state (an EE task, a split plan) is this export's: the same tile and the
        same export arguments. The store is keyed by the map index, and a re-run tiling can put
        another tile there; other arguments (scale, CRS) would cut or write differently."""
        mine = {"tile_id": self.tile_id, "fingerprint": self._fingerprint()}
        if isinstance(stored, dict) and "fingerprint" not in stored and "operation" in stored:
            return True  # kept by a version before fingerprints (an upgrade mid-run): trusted as it was
        theirs = {k: stored.get(k) for k in mine} if isinstance(stored, dict) else {}
        theirs["tile_id"] = None if theirs.get("tile_id") is None else str(theirs["tile_id"])
        if theirs == mine:
            return True
        self.log.warning(
            "Ignoring the stored %s of this task instance: it was kept for tile %r with export fingerprint %r, "
            "this try exports tile %r with %r (a re-run tiling, or changed arguments): starting afresh",
            what, theirs.get("tile_id"), theirs.get("fingerprint"), mine["tile_id"], mine["fingerprint"],
        )  # fmt: skip
        return False

    def _forgotten_operation(self, name: str, context: Context) -> str:
        """EE no longer knows a stored operation (it keeps tasks for a while only): done if the
        export's outputs exist, else submitted again (``FORGOTTEN`` makes the mixin resubmit)."""
        if self._outputs_exist(context):
            self.log.info("EE no longer knows EE task %s; its outputs exist: not submitting again", name)
            self._operation = {
                "name": name, "state": "SUCCEEDED", "description": self.task_description(context),
                "create_time": self._not_before(context, self._stored),
            }  # fmt: skip
            return "SUCCEEDED"
        self.log.warning("EE no longer knows EE task %s and its outputs are missing: submitting again", name)
        return "FORGOTTEN"

    def _outputs_exist(self, context: Context) -> bool:
        """Whether the export's destination holds its outputs (the asset; files named as EE names them)."""
        if self.destination == "asset":
            return self.hook.get_asset(self._fill(self.asset_id) or "") is not None
        prefix = self._fill(self.file_name_prefix) or self.task_description(context)
        from airflow_provider_gee.utils.sources import DriveSource, GcsSource

        exts = export_extensions(self._file_format(), self.export_type)
        if self.destination == "gcs":
            return bool(GcsSource(self.gcp_conn_id, self.impersonation_chain, self.bucket or "", prefix, exts).list())
        try:
            folder_id = self.drive_hook.export_folder(self.folder, prefix, exts)
        except GeeConfigurationError:  # no folder of that name: nothing was written
            return False
        return bool(DriveSource(self.gcp_conn_id, self.impersonation_chain, folder_id, prefix, exts).list())

    def is_job_active(self, status: str) -> bool:
        return status in ACTIVE_STATES

    def is_job_succeeded(self, status: str) -> bool:
        return status == "SUCCEEDED"

    # Airflow's mixin declares None, yet returns this method's value when it re-attaches a retry
    # (execute_resumable's reconnect path): a result here ends the task with it
    def poll_until_complete(self, external_id: Any, context: Context) -> dict[str, Any] | None:  # type: ignore[override]
        name = external_id["operation"]
        if self.deferrable:
            from airflow_provider_gee.triggers.task import GeeTaskTrigger

            end_with = None
            if self.end_from_trigger and not self.outlets:
                end_with = self._result_base(context, (self._operation or {}).get("description"))
            self.defer(
                trigger=GeeTaskTrigger(
                    [name], gcp_conn_id=self.gcp_conn_id, impersonation_chain=self.impersonation_chain,
                    poll_interval=self.poll_interval, timeout=self.wait_timeout, cancel_on_kill=True,
                    end_with_result=end_with, event_extra={"inputs": self._inputs} if self._inputs else None,
                ),
                method_name="execute_complete",
            )  # fmt: skip
        op = self._poll(name)
        if op["state"] != "SUCCEEDED":
            self._raise_if_too_big(op)
            raise self._task_failed(op)
        return self._result(context, op)

    def _poll(self, name: str) -> dict[str, Any]:
        """Wait in this process until EE task ``name`` ends (cancelled after ``wait_timeout``)."""
        deadline = None if self.wait_timeout is None else time.monotonic() + self.wait_timeout
        while True:
            op = summarize(self.hook.get_operation(name))
            if op["state"] != (self._operation or {}).get("state"):
                self.log.info("EE task %s: %s", name, op["state"])
            self._operation = op
            if op["state"] in TERMINAL_STATES:
                return op
            if deadline is not None and time.monotonic() > deadline:
                self.hook.cancel_operation(name)
                raise EarthEngineError(f"EE task {name} still running after {self.wait_timeout} s; cancelled it.")
            time.sleep(self.poll_interval)

    def get_job_result(self, external_id: Any, context: Context) -> dict[str, Any]:
        if not self._operation or self._operation.get("name") != external_id["operation"]:
            self._operation = summarize(self.hook.get_operation(external_id["operation"]))
        return self._result(context, self._operation)

    def _cancel_discarded(self, name: str | None) -> None:
        """Cancel an EE task of stored state this export does not use (another tile's at this map
        index, or other arguments'): this task instance started it, and left running it would write
        beside this export's outputs and outside the pool's bound."""
        if not name:
            return
        try:
            op = summarize(self.hook.get_operation(name))
        except EarthEngineError as exc:
            if exc.status_code == 404:  # EE no longer knows it: nothing runs
                return
            raise
        if op["state"] in ACTIVE_STATES:
            self.log.warning("Cancelling EE task %s of the ignored stored state (%s)", name, op["state"])
            self.hook.cancel_operation(name)

    @staticmethod
    def _not_before(context: Context, stored: dict[str, Any] | None) -> str | None:
        """When an EE task that EE no longer knows was created at the earliest: when it was
        submitted, as stored, else the start of the DAG run. Its harvest takes no older file."""
        if stored and stored.get("submitted_at"):
            return str(stored["submitted_at"])
        start = getattr(context.get("dag_run"), "start_date", None)
        return start.isoformat() if start else None
