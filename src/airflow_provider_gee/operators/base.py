"""The base of the provider's operators: connection, impersonation, hook, safe retries.

As in the Amazon provider (``AwsBaseOperator``/``AwsBaseSensor`` over one hook mixin), the
connection arguments and the hook live in one mixin, used by :class:`GeeBaseOperator` and by
:class:`~airflow_provider_gee.sensors.base.GeeBaseSensor`; operators that call no Google service
build on :class:`GeeLocalOperator`. Credentials only ever go through the
Google provider's ``GoogleBaseHook`` (``gcp_conn_id``, ``impersonation_chain``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator

from airflow_provider_gee.utils.lineage import LineageMixin

if TYPE_CHECKING:
    from airflow_provider_gee.hooks.drive import DriveHook
    from airflow_provider_gee.hooks.earth_engine import EarthEngineHook

# The hook module (the Google provider's base hook, googleapiclient, aiohttp) is imported where
# the hook is first used: every task process parses its DAG file, so a module-level import here
# would be paid on every task start (tests/integration/test_import_cost.py keeps it so).

#: Retries are safe for every operator of this provider (an export re-attaches to its EE task, a
#: harvest skips what it already verified, a merge resumes its plan), so they retry by default.
#: They also absorb Airflow's stale defer-exit race (apache/airflow#72716).
DEFAULT_RETRIES = 3
DEFAULT_RETRY_DELAY = timedelta(seconds=30)


def default_deferrable() -> bool:
    """Airflow's ``[operators] default_deferrable`` (False unless the deployment sets it), as the
    Google, Amazon and dbt Cloud providers read it."""
    from airflow.providers.common.compat.sdk import conf

    return conf.getboolean("operators", "default_deferrable", fallback=False)


class GeeHookMixin:
    """``gcp_conn_id``, ``impersonation_chain`` and the :class:`EarthEngineHook` built from them.

    :param gcp_conn_id: the Airflow connection (type ``google_cloud_platform``).
    :param impersonation_chain: optional service account to impersonate, or a chain of them
        (templated), as everywhere in the Google provider.
    """

    gcp_conn_id: str
    impersonation_chain: str | Sequence[str] | None

    def _init_connection(self, gcp_conn_id: str, impersonation_chain: str | Sequence[str] | None) -> None:
        self.gcp_conn_id = gcp_conn_id
        self.impersonation_chain = impersonation_chain

    @cached_property
    def hook(self) -> EarthEngineHook:
        from airflow_provider_gee.hooks.earth_engine import EarthEngineHook

        return EarthEngineHook(gcp_conn_id=self.gcp_conn_id, impersonation_chain=self.impersonation_chain)

    @cached_property
    def drive_hook(self) -> DriveHook:
        """The connection's :class:`~airflow_provider_gee.hooks.drive.DriveHook` (one per
        operator; a harvest's download threads make their own, as googleapiclient's are not
        thread-safe)."""
        from airflow_provider_gee.hooks.drive import DriveHook

        return DriveHook(gcp_conn_id=self.gcp_conn_id, impersonation_chain=self.impersonation_chain)


class GeeLocalOperator(LineageMixin, BaseOperator):
    """Base of the provider's operators that call no Google service (tiling points, stitching):
    the safe retry defaults, tiles naming mapped instances, and lineage.

    Unless given (or set in ``default_args``), ``retries`` is 3 and ``retry_delay`` 30 seconds;
    they are declared here so that ``.partial()`` picks the defaults up too. Configuration errors
    (:class:`~airflow_provider_gee.exceptions.GeeConfigurationError`) fail at once without retrying.
    Operators that are mapped over tiles name each instance by its tile in Airflow's UI (their
    ``default_map_index_template``) unless ``map_index_template`` is given. What an operator read
    and wrote is its OpenLineage lineage (:class:`~airflow_provider_gee.utils.lineage.LineageMixin`).
    """

    #: Airflow's ``map_index_template`` when none is given: how a mapped instance is named in the UI
    default_map_index_template: ClassVar[str | None] = None

    @classmethod
    def _name_tiles(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        """``kwargs`` with the operator's ``default_map_index_template`` unless one is given."""
        if kwargs.get("map_index_template") is None and cls.default_map_index_template:
            kwargs["map_index_template"] = cls.default_map_index_template
        return kwargs

    @classmethod
    def partial(cls, **kwargs: Any) -> Any:
        """As Airflow's, with the operator's ``default_map_index_template``: a mapped operator's
        template is read from what ``partial`` was given, before any instance exists."""
        return super().partial(**cls._name_tiles(kwargs))

    def __init__(
        self,
        *,
        retries: int | None = DEFAULT_RETRIES,
        retry_delay: timedelta | float = DEFAULT_RETRY_DELAY,
        **kwargs: Any,
    ) -> None:
        super().__init__(retries=retries, retry_delay=retry_delay, **self._name_tiles(kwargs))


class GeeBaseOperator(GeeHookMixin, GeeLocalOperator):
    """Base of the provider's operators that call Earth Engine, Drive or Cloud Storage: those of
    :class:`GeeLocalOperator` (retries, tile names, lineage), with the connection and the hook.

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
