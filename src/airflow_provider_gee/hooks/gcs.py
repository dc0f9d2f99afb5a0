"""GcsHook: the Google provider's GCSHook on this provider's connection, so that a connection with
a person's EE credentials (extra ``ee_credentials``) reaches Cloud Storage as it reaches EE."""

from __future__ import annotations

from airflow.providers.google.cloud.hooks.gcs import GCSHook

from airflow_provider_gee.hooks.connection import GeeConnectionMixin


class GcsHook(GeeConnectionMixin, GCSHook):
    """:class:`~airflow.providers.google.cloud.hooks.gcs.GCSHook` with the credentials of
    :class:`~airflow_provider_gee.hooks.connection.GeeConnectionMixin` (an EE credentials file,
    impersonation at the emulator when the connection is not Google's); everything else is the
    Google provider's.

    :param gcp_conn_id: the Airflow connection id.
    :param impersonation_chain: optional service account(s) to impersonate.
    """
