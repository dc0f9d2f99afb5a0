"""The base of the provider's sensors: the connection and the hook, as operators have them
(:class:`~airflow_provider_gee.operators.base.GeeBaseOperator`), on Airflow's sensor."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseSensorOperator

from airflow_provider_gee.operators.base import GeeHookMixin


class GeeBaseSensor(GeeHookMixin, BaseSensorOperator):
    """Base of the provider's sensors.

    :param gcp_conn_id: the Airflow connection (type ``google_cloud_platform``).
    :param impersonation_chain: optional service account(s) to impersonate (templated).
    """

    template_fields: Sequence[str] = ("impersonation_chain",)

    def __init__(
        self,
        *,
        gcp_conn_id: str = "google_cloud_default",
        impersonation_chain: str | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._init_connection(gcp_conn_id, impersonation_chain)
