"""What every hook of this provider reads from its Airflow connection besides the Google
provider's own fields: where EE and Drive live (Google or the emulator) and which scopes to ask for."""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.exceptions import AirflowException, AirflowNotFoundException

from airflow_provider_gee.exceptions import GeeConfigurationError
from airflow_provider_gee.utils.retry import RetryPolicy

#: Scopes requested when the connection names none: EE itself, Drive (harvesting) and Cloud Storage.
DEFAULT_SCOPES = (
    "https://www.googleapis.com/auth/earthengine",
    "https://www.googleapis.com/auth/cloud-platform",
    "https://www.googleapis.com/auth/drive",
)
GOOGLE_EE_API_URL = "https://earthengine.googleapis.com"
API_URL_ENV = "GEE_API_URL"
DRIVE_API_URL_ENV = "GEE_DRIVE_API_URL"


class GeeConnectionMixin:
    """Endpoints and scopes from connection extras, for hooks built on ``GoogleBaseHook``.

    * ``api_url``: EE base URL without a trailing slash (default: environment variable
      ``GEE_API_URL``, else Google's). Point it at ``gee-emulator`` to run offline.
    * ``drive_api_url``: Drive base URL (default ``GEE_DRIVE_API_URL``, else
      ``{api_url}/drive/v3/`` when ``api_url`` is not Google's, else Google's own).
    * ``scope``: comma-separated scopes (default: Earth Engine, Cloud Platform and Drive).
    * ``retry_initial_seconds`` / ``retry_max_seconds``: backoff bounds for transient errors
      (``num_retries``, the Google provider's field, gives the number of retries).
    * ``client_cache_seconds``: how long a machine reuses the discovery document and algorithm
      list ``ee.Initialize`` downloads (default 3600; 0: download them in every process).
    """

    # ``_get_field`` comes from GoogleBaseHook, which every user of this mixin also inherits.
    _api_url_override: str | None = None

    def get_credentials_and_project_id(self) -> Any:
        """The Google provider's credentials, with a key that cannot be used named as such (its
        own errors range from "Invalid key JSON." to cryptography's PEM framing errors)."""
        try:
            return super().get_credentials_and_project_id()  # type: ignore[misc]
        except (ValueError, AirflowException) as exc:
            if isinstance(exc, AirflowNotFoundException):
                raise
            conn_id = getattr(self, "gcp_conn_id", None)
            if not (self._get_field("keyfile_dict", None) or self._get_field("key_path", None)):  # type: ignore[attr-defined]
                raise GeeConfigurationError(
                    f"Connection {conn_id!r} has no key, so it uses Application Default Credentials, which failed "
                    f"({exc}): run `gcloud auth application-default login` on the workers (or point "
                    "GOOGLE_APPLICATION_CREDENTIALS at a credentials file), and name the project with "
                    "GOOGLE_CLOUD_PROJECT or `gcloud config set project`."
                ) from exc
            raise GeeConfigurationError(
                f"The service-account key of connection {conn_id!r} cannot be used ({exc}): give the JSON key file "
                "Google issued, unchanged, as keyfile_dict or key_path (create a new key if it is damaged)."
            ) from exc

    @property
    def scopes(self) -> Sequence[str]:
        scope = self._get_field("scope", None)
        if scope:
            return [s.strip() for s in str(scope).split(",") if s.strip()]
        return list(DEFAULT_SCOPES)

    @cached_property
    def api_url(self) -> str:
        """EE base URL, no trailing slash."""
        url = self._api_url_override or self._get_field("api_url", None) or os.environ.get(API_URL_ENV)
        return str(url or GOOGLE_EE_API_URL).rstrip("/")

    @property
    def uses_google(self) -> bool:
        return self.api_url == GOOGLE_EE_API_URL

    @cached_property
    def drive_api_url(self) -> str | None:
        """Drive base URL ending in ``/drive/v3/``, or ``None`` for Google's own."""
        url = self._get_field("drive_api_url", None) or os.environ.get(DRIVE_API_URL_ENV)
        if url:
            return str(url).rstrip("/") + "/"
        return None if self.uses_google else f"{self.api_url}/drive/v3/"

    @cached_property
    def client_cache_seconds(self) -> float:
        value = self._get_field("client_cache_seconds", None)  # type: ignore[attr-defined]
        return 3600.0 if value in (None, "") else float(value)

    @cached_property
    def retry_policy(self) -> RetryPolicy:
        """Backoff for transient errors, from the connection."""
        return RetryPolicy(
            max_retries=self.num_retries,
            initial_seconds=float(self._get_field("retry_initial_seconds", None) or 1.0),
            max_seconds=float(self._get_field("retry_max_seconds", None) or 32.0),
        )
