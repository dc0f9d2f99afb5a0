"""GeeTaskSensor: wait for EE tasks started anywhere (a notebook, another DAG, the Code Editor)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
from airflow.sdk import Context, PokeReturnValue

from airflow_provider_gee.exceptions import EarthEngineError, EarthEngineTaskFailed, GeeConfigurationError
from airflow_provider_gee.operators.base import default_deferrable
from airflow_provider_gee.sensors.base import GeeBaseSensor
from airflow_provider_gee.triggers.events import operations_event
from airflow_provider_gee.utils.operations import TERMINAL_STATES, summarize

# the hook and trigger (Google provider, aiohttp) are imported where used, not when the DAG is parsed


class GeeTaskSensor(GeeBaseSensor):
    """Wait until EE operations end, given by name or by a description prefix.

    Returns ``{"succeeded": [summary...], "failed": [summary...]}``; with ``fail_on_error`` (the
    default) the first FAILED or CANCELLED task fails the sensor with EE's message.

    :param operations: operation names or ids (templated).
    :param description_prefix: wait for every EE task whose description starts with this
        (templated); while none exists yet, the sensor keeps waiting. Only the connection
        identity's own recent tasks are seen: EE lists the caller's tasks, not the project's.
    :param fail_on_error: fail as soon as one task fails; otherwise wait for all and report.
    :param gcp_conn_id: the Airflow connection id.
    :param impersonation_chain: optional service account(s) to impersonate (templated).
    :param deferrable: wait in the triggerer instead of poke/reschedule (default: Airflow's
        ``[operators] default_deferrable``).
    """

    template_fields: Sequence[str] = ("operations", "description_prefix", "impersonation_chain")
    ui_color = "#e3ecd2"

    def __init__(
        self,
        *,
        operations: Sequence[str] | None = None,
        description_prefix: str | None = None,
        fail_on_error: bool = True,
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (operations is None) == (description_prefix is None):
            raise GeeConfigurationError("Give exactly one of operations=[...] or description_prefix='...'.")
        self.operations = operations
        self.description_prefix = description_prefix
        self.fail_on_error = fail_on_error
        self.deferrable = default_deferrable() if deferrable is None else deferrable

    def _targets(self) -> list[dict[str, Any]]:
        """Current summaries of the operations waited for."""
        if self.operations is not None:
            return [summarize(self.hook.get_operation(name)) for name in self.operations]
        prefix = self.description_prefix or ""
        return [
            summarize(op)
            for op in self.hook.list_operations()
            if str(op.get("metadata", {}).get("description", "")).startswith(prefix)
        ]

    def _outcome(self, summaries: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        failed = [s for s in summaries if s["state"] != "SUCCEEDED"]
        if failed and self.fail_on_error:
            first = failed[0]
            raise EarthEngineTaskFailed(
                first.get("error") or first["state"], operation=first["name"], state=first["state"]
            )
        return {"succeeded": [s for s in summaries if s["state"] == "SUCCEEDED"], "failed": failed}

    def poke(self, context: Context) -> bool | Any:
        targets = self._targets()
        if not targets:
            self.log.info("No EE task with a description starting with %r yet", self.description_prefix)
            return False
        ended = [t for t in targets if t["state"] in TERMINAL_STATES]
        if self.fail_on_error and any(t["state"] != "SUCCEEDED" for t in ended):
            self._outcome(ended)
        self.log.info("%d of %d EE tasks ended", len(ended), len(targets))
        if len(ended) < len(targets):
            return False
        return PokeReturnValue(is_done=True, xcom_value=self._outcome(ended))

    def execute(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        # ``event`` is set when a wait for the first matching task (TimeDeltaTrigger) ends
        if not self.deferrable:
            return super().execute(context)
        targets = self._targets()
        if not targets:
            self.log.info(
                "No EE task with a description starting with %r yet; checking again later", self.description_prefix
            )
            self.defer(trigger=TimeDeltaTrigger(timedelta(seconds=self.poke_interval)), method_name="execute")
        names = [t["name"] for t in targets]
        from airflow_provider_gee.triggers.task import GeeTaskTrigger

        self.defer(
            trigger=GeeTaskTrigger(
                names, gcp_conn_id=self.gcp_conn_id, impersonation_chain=self.impersonation_chain,
                poll_interval=self.poke_interval, fail_fast=self.fail_on_error,
                timeout=self.timeout if self.timeout and self.timeout != float("inf") else None,
            ),
            method_name="execute_complete",
        )  # fmt: skip

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        ended = operations_event(event)
        if ended["status"] in ("success", "failed"):
            return self._outcome(list(ended["operations"].values()))
        raise EarthEngineError(ended.get("message") or f"Unexpected trigger event {event!r}")
