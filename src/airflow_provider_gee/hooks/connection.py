"""What every hook of this provider reads from its Airflow connection besides the Google
provider's own fields: where EE and Drive live (Google or the emulator) and which scopes to ask for."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow.exceptions import AirflowException, AirflowNotFoundException

from airflow_provider_gee.exceptions import GeeConfigurationError
from airflow_provider_gee.utils.retry import RetryPolicy

if TYPE_CHECKING:  # every user of the mixin also inherits GoogleBaseHook (``_get_field``, ``num_retries``)
    from airflow.providers.google.common.hooks.base_google import GoogleBaseHook as _HookBase
else:
    _HookBase = object

#: Scopes requested when the connection names none: EE itself, Drive (harvesting) and Cloud Storage.
DEFAULT_SCOPES = (
    "https://www.googleapis.com/auth/earthengine",
    "https://www.googleapis.com/auth/cloud-platform",
    "https://www.googleapis.com/auth/drive",
)
GOOGLE_EE_API_URL = "https://earthengine.googleapis.com"
API_URL_ENV = "GEE_API_URL"
DRIVE_API_URL_ENV = "GEE_DRIVE_API_URL"
#: Google's OAuth token endpoint and its ``tokeninfo`` (what a token may do)
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
GOOGLE_TOKENINFO_URI = "https://oauth2.googleapis.com/tokeninfo"


def is_google_url(url: str) -> bool:
    """Whether ``url`` is one of Google's own endpoints (``https://*.googleapis.com``: EE's, its
    high-volume endpoint ``earthengine-highvolume.googleapis.com``, regional ones), not an emulator."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return parts.scheme == "https" and (host == "googleapis.com" or host.endswith(".googleapis.com"))


def read_ee_credentials(value: Any, conn_id: str | None) -> dict[str, Any]:
    """The content of an EE credentials file (``earthengine authenticate``'s
    ``~/.config/earthengine/credentials``) from the connection extra ``ee_credentials``: a path, the
    JSON text, or a dict. Errors name the extra and the fix."""
    where = f"The extra 'ee_credentials' of connection {conn_id!r}"
    # the value is never repeated in a message: it may be the credential itself
    if isinstance(value, dict):
        data: Any = value
    else:
        text = str(value).strip()
        if not text.startswith("{"):
            try:
                text = Path(text).expanduser().read_text()
            except (OSError, ValueError) as exc:
                reason = getattr(exc, "strerror", None) or type(exc).__name__
                raise GeeConfigurationError(
                    f"{where} is neither JSON nor the path of a readable file ({reason}): run `earthengine "
                    "authenticate` on the workers (it writes ~/.config/earthengine/credentials) and give that path, "
                    "or give the file's JSON content."
                ) from None
        try:
            data = json.loads(text)
        except ValueError:
            raise GeeConfigurationError(
                f"{where} is not JSON: give the path of the file `earthengine authenticate` writes, or its content "
                "unchanged."
            ) from None
    if not isinstance(data, dict) or not data.get("refresh_token"):
        raise GeeConfigurationError(
            f"{where} holds no refresh_token: it must be the file `earthengine authenticate` (or ee.Authenticate()) "
            "writes; run it again to get a new one."
        )
    from airflow.providers.common.compat.sdk import mask_secret

    for key in ("refresh_token", "client_secret"):  # Airflow masks the extra by name only, not these
        if data.get(key):
            mask_secret(str(data[key]))
    return data


def is_loopback_url(url: str) -> bool:
    """Whether ``url``'s host is this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    import ipaddress

    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bill_to(credentials: Any, project: str | None) -> Any:
    """``credentials`` naming ``project`` as their quota project when they name one of their own:
    google-auth sends the credentials' quota project in ``X-Goog-User-Project``, replacing the one a
    caller sets, so the official client drops theirs (``ee/_cloud_api_utils.py``) and names the
    EE project."""
    current = getattr(credentials, "quota_project_id", None)
    if current and project and current != project and hasattr(credentials, "with_quota_project"):
        return credentials.with_quota_project(project)
    return credentials


def identity_kind(credentials: Any, *, ee_file: bool = False) -> str:
    """What kind of identity credentials are, in the words the docs use."""
    module, name = type(credentials).__module__, type(credentials).__name__
    if ee_file:
        return "EE credentials (earthengine authenticate)"
    if module.startswith("google.auth.impersonated_credentials"):
        return "impersonated service account"
    if module.startswith(("google.auth.external_account", "google.auth.identity_pool", "google.auth.aws",
                          "google.auth.pluggable")):  # fmt: skip
        return "external account (workload identity federation)"
    if module.startswith("google.auth.compute_engine"):
        return "metadata server (Compute Engine, GKE, Cloud Run, Composer)"
    if module.startswith("google.oauth2.service_account"):
        return "service-account key"
    if module.startswith("google.oauth2.credentials") and name == "Credentials":
        return "a person's credentials (Application Default Credentials)"
    return f"{module}.{name}"


class GeeConnectionMixin(_HookBase):
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
    * ``ee_credentials``: a person's Earth Engine credentials, as ``earthengine authenticate``
      writes them (``~/.config/earthengine/credentials``): the file's path or its JSON. They carry
      the Drive scope that gcloud's own login no longer grants.

    EE calls bill the connection's project even when the credentials name a quota project of
    their own (an ADC file from gcloud does), as the official ``ee`` client does.
    """

    _api_url_override: str | None = None
    _gee_credentials: tuple[Any, str | None] | None = None

    def get_credentials_and_project_id(self) -> Any:
        """The Google provider's credentials (or those of an EE credentials file), with a key that
        cannot be used named as such (the provider's own errors range from "Invalid key JSON." to
        cryptography's PEM framing errors)."""
        cached: tuple[Any, str | None] | None = getattr(self, "_gee_credentials", None)
        if cached is None:
            ee_file = self._get_field("ee_credentials", None)
            if ee_file:  # impersonates at the right endpoint itself
                cached = self._ee_file_credentials(ee_file)
            else:
                credentials, project = self._provider_credentials()
                cached = (self._for_this_endpoint(credentials), project)
            self._gee_credentials = cached
        return cached

    @property
    def identity_kind(self) -> str:
        """What kind of identity this connection resolves to (for logs and ``gee-doctor``)."""
        credentials = self.get_credentials_and_project_id()[0]
        return identity_kind(credentials, ee_file=bool(self._get_field("ee_credentials", None)))

    @property
    def token_uri(self) -> str:
        """Where a person's refresh token is exchanged: Google's token endpoint; with an emulator's
        ``api_url``, the extra ``token_uri`` or, on a loopback host, ``{api_url}/token``. A refresh
        token lives long: it is never sent to another host on a guess."""
        if self.uses_google:
            return GOOGLE_TOKEN_URI
        given = self._get_field("token_uri", None)
        if given:
            return str(given)
        if is_loopback_url(self.api_url):
            return f"{self.api_url}/token"
        raise GeeConfigurationError(
            f"Connection {getattr(self, 'gcp_conn_id', None)!r} has api_url {self.api_url!r}, neither Google's nor on "
            "this machine: a person's refresh token is sent only to Google's token endpoint or a local emulator's. "
            "If api_url is an emulator, name its token endpoint in the extra 'token_uri'."
        )

    @property
    def tokeninfo_uri(self) -> str:
        """Google's ``tokeninfo`` (what a token may do), or the emulator's."""
        return GOOGLE_TOKENINFO_URI if self.uses_google else f"{self.api_url}/tokeninfo"

    def _ee_file_credentials(self, value: Any) -> tuple[Any, str | None]:
        """Credentials from an EE credentials file, as ``ee/oauth.py`` reads it
        (``get_credentials_arguments``): EE's client unless the file names one, its scopes, and its
        ``project`` (the connection's ``project`` extra wins)."""
        from ee import oauth  # EE's own client id, secret and scopes, as `earthengine authenticate` uses them
        from google.oauth2.credentials import Credentials

        base: Any = self
        data = read_ee_credentials(value, base.gcp_conn_id)
        project = base._get_field("project", None) or data.get("project")
        credentials = Credentials(
            token=None,
            refresh_token=data["refresh_token"],
            token_uri=self.token_uri,  # ee: Google's, "not overridable in file"; the emulator's offline
            client_id=data.get("client_id") or oauth.CLIENT_ID,
            client_secret=data.get("client_secret") or oauth.CLIENT_SECRET,
            scopes=list(data.get("scopes") or oauth.SCOPES),
        )
        chain = base.impersonation_chain or base._get_field("impersonation_chain", None)
        if chain:
            credentials = self._impersonated(credentials, chain)
        return credentials, project

    def _impersonated(self, source: Any, chain: str | Sequence[str]) -> Any:
        """``source`` acting as the last account of ``chain`` (the others as delegates), through IAM
        Credentials' ``generateAccessToken`` at Google, or at the emulator when it is not Google."""
        from google.auth import impersonated_credentials

        accounts = [s.strip() for s in chain.split(",")] if isinstance(chain, str) else list(chain)
        target = accounts[-1]
        override = None
        if not self.uses_google:
            override = f"{self.api_url}/v1/projects/-/serviceAccounts/{target}:generateAccessToken"
        return impersonated_credentials.Credentials(
            source_credentials=source,
            target_principal=target,
            delegates=accounts[:-1] or None,
            target_scopes=list(self.scopes),
            iam_endpoint_override=override,
        )

    def _for_this_endpoint(self, credentials: Any) -> Any:
        """Credentials as this connection uses them: impersonating at the emulator's IAM endpoint
        when the connection is not Google's (the Google provider always asks Google's). (EE calls
        bill the EE project: :func:`bill_to`, in the EE hook.)"""
        from google.auth import impersonated_credentials

        if isinstance(credentials, impersonated_credentials.Credentials) and not self.uses_google:
            source = credentials._source_credentials  # no public accessor; rebuilt with the endpoint
            chain = [*(credentials._delegates or []), credentials.signer_email]
            credentials = self._impersonated(source, chain)
        return credentials

    def _provider_credentials(self) -> tuple[Any, str | None]:
        """The Google provider's credentials (key, key file, ADC, external account, impersonation)."""
        try:
            return super().get_credentials_and_project_id()
        except (ValueError, AirflowException) as exc:
            if isinstance(exc, AirflowNotFoundException):
                raise
            conn_id = getattr(self, "gcp_conn_id", None)
            if not (self._get_field("keyfile_dict", None) or self._get_field("key_path", None)):
                raise GeeConfigurationError(
                    f"Connection {conn_id!r} has no key, so it uses Application Default Credentials, which failed "
                    f"({exc}): give it a person's EE credentials (extra 'ee_credentials': the file `earthengine "
                    "authenticate` writes), or run `gcloud auth application-default login` on the workers (or point "
                    "GOOGLE_APPLICATION_CREDENTIALS at a credentials file), and name the project with the extra "
                    "'project', GOOGLE_CLOUD_PROJECT or `gcloud config set project`."
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
        """Whether the connection talks to Google (any ``https://*.googleapis.com`` EE endpoint,
        the high-volume one included), not to an emulator."""
        return is_google_url(self.api_url)

    @cached_property
    def drive_api_url(self) -> str | None:
        """Drive base URL ending in ``/drive/v3/``, or ``None`` for Google's own."""
        url = self._get_field("drive_api_url", None) or os.environ.get(DRIVE_API_URL_ENV)
        if url:
            return str(url).rstrip("/") + "/"
        return None if self.uses_google else f"{self.api_url}/drive/v3/"

    @cached_property
    def client_cache_seconds(self) -> float:
        value = self._get_field("client_cache_seconds", None)
        return 3600.0 if value in (None, "") else float(value)

    @cached_property
    def retry_policy(self) -> RetryPolicy:
        """Backoff for transient errors, from the connection."""
        return RetryPolicy(
            max_retries=self.num_retries,
            initial_seconds=float(self._get_field("retry_initial_seconds", None) or 1.0),
            max_seconds=float(self._get_field("retry_max_seconds", None) or 32.0),
        )
