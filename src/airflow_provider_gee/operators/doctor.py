"""GeeDoctorOperator: ``gee-doctor``'s checks as the first task of a DAG."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import Context

from airflow_provider_gee.exceptions import GeeConfigurationError
from airflow_provider_gee.operators.base import GeeBaseOperator


class GeeDoctorOperator(GeeBaseOperator):
    """Check that this DAG's exports can run before any is submitted: the connection's identity and
    scopes, the EE project (registered, accepted as quota project), the storage of the exports'
    destination and, by deferring for a moment, that a triggerer is alive. Fails naming each failed
    check and its fix; returns the findings.

    A task has no metadata database in Airflow 3, so the pool is not read here: run ``gee-doctor
    --pool NAME`` on a scheduler host for it.

    :param destination: ``"drive"``, ``"gcs"`` or ``"asset"`` (templated; ``None``: no storage check).
    :param bucket: the bucket of ``gcs`` exports (templated); an object is created and deleted in it.
    :param prefix: where in the bucket the exports write (templated): the probe object goes there.
    :param check_triggerer: defer once: the task comes back only if a triggerer runs the trigger.
    :param triggerer_timeout: seconds to wait for that before the task fails (Airflow's deferral
        timeout: no triggerer picked the trigger up).
    """

    template_fields: Sequence[str] = ("destination", "bucket", "prefix", *GeeBaseOperator.template_fields)
    ui_color = "#f3e8c8"

    def __init__(
        self,
        *,
        destination: str | None = None,
        bucket: str | None = None,
        prefix: str = "",
        check_triggerer: bool = True,
        triggerer_timeout: float = 120.0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("retries", 0)  # a failed check needs a fix, not a retry
        super().__init__(**kwargs)
        self.destination = destination
        self.bucket = bucket
        self.prefix = prefix
        self.check_triggerer = check_triggerer
        self.triggerer_timeout = triggerer_timeout

    def execute(self, context: Context) -> list[dict[str, str]]:
        from airflow_provider_gee.utils.doctor import Doctor, render

        doctor = Doctor(
            self.gcp_conn_id,
            destination=self.destination,
            bucket=self.bucket,
            prefix=self.prefix,
            impersonation_chain=self.impersonation_chain,
            metadata_db=False,
        )
        findings = doctor.run()
        render(self.gcp_conn_id, findings, self.log.info)
        if doctor.failed:
            failed = [f"{f.check}: {f.detail} (fix: {f.fix})" for f in findings if f.level == "fail"]
            raise GeeConfigurationError("gee-doctor found problems: " + "; ".join(failed))
        result = [f.as_dict() for f in findings]
        if self.check_triggerer:
            from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger

            self.log.info("Deferring once: the task resumes only if a triggerer runs its trigger")
            self.defer(
                trigger=TimeDeltaTrigger(timedelta(seconds=0)),
                method_name="execute_complete",
                kwargs={"findings": result},
                timeout=timedelta(seconds=self.triggerer_timeout),
            )
        return result

    def execute_complete(
        self, context: Context, event: Any = None, findings: list[dict[str, str]] | None = None
    ) -> list[dict[str, str]]:
        from airflow_provider_gee.utils.doctor import Finding

        self.log.info("triggerer: alive (the deferral came back)")
        return [*(findings or []), Finding("triggerer", "ok", "a deferral came back").as_dict()]
