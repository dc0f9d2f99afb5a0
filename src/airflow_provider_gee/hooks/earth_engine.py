"""EarthEngineHook: Earth Engine through an Airflow Google Cloud connection.

Two halves, on purpose:

* the REST half (operations, assets, exports, value:compute) sends plain HTTPS requests with the
  connection's credentials. It needs no ``ee.Initialize`` (which costs two discovery fetches and the
  whole algorithm list), keeps HTTP status codes (so transient errors are told from permanent
  ones), and is what operators use for bookkeeping;
* :meth:`EarthEngineHook.initialize_ee` sets up the process-global ``ee`` client, only where an EE
  expression must be built (a user's ``build`` callable) or serialized.
"""

from __future__ import annotations

import asyncio
import fnmatch
import itertools
import json as json_module
import re
import threading
from collections.abc import Iterator, Sequence
from functools import cached_property
from typing import Any, Literal

import aiohttp
import google.auth.exceptions
import requests
from airflow.providers.google.common.hooks.base_google import GoogleBaseAsyncHook, GoogleBaseHook
from asgiref.sync import sync_to_async
from google.auth.transport.requests import AuthorizedSession, Request

from airflow_provider_gee.exceptions import EarthEngineError, GeeConfigurationError
from airflow_provider_gee.hooks.connection import GOOGLE_EE_API_URL, GeeConnectionMixin, bill_to
from airflow_provider_gee.utils.operations import DESTINATIONS, EXPORT_KINDS, LIST_MAX_PAGES, count_active
from airflow_provider_gee.utils.retry import RetryPolicy, async_call_with_retry, call_with_retry

ExportKind = Literal["image", "table"]
Destination = Literal["drive", "asset", "gcs"]

# ``ee`` keeps one credential, project and base URL per process; remember which connection it was
# set up for so that a second hook for the same connection costs nothing.
_ee_lock = threading.Lock()
_ee_initialized_for: tuple[str, str, str, str] | None = None


#: The header naming the project that is billed and whose quota is used (ee/data.py sends it too).
QUOTA_PROJECT_HEADER = "X-Goog-User-Project"
#: A Cloud project as EE's REST paths take it: an id (6-30 characters), a domain-scoped id
#: (``example.com:my-project``) or a project number (Resource Manager's naming rules).
PROJECT_RE = re.compile(r"(?:[a-z][-a-z0-9.]*[a-z0-9]:)?[a-z][-a-z0-9]{4,28}[a-z0-9]|[0-9]{1,20}")


def check_relative_pattern(pattern: str) -> None:
    """Asset patterns are relative to a folder: no ``..`` part, no leading ``/``."""
    if pattern.startswith("/") or ".." in pattern.split("/") or pattern.startswith("projects/"):
        raise GeeConfigurationError(
            f"Pattern {pattern!r} could reach outside its folder: use a pattern relative to the folder, "
            "without '..' or a leading '/'."
        )


class EarthEngineHook(GeeConnectionMixin, GoogleBaseHook):
    """Talk to Earth Engine with the credentials of a ``google_cloud_platform`` connection.

    Connection extras: the Google provider's own (``key_path``, ``keyfile_dict``,
    ``impersonation_chain``, ``project``, ``scope``, ``num_retries``) and those of
    :class:`~airflow_provider_gee.hooks.connection.GeeConnectionMixin` (``api_url``,
    ``drive_api_url``, ``retry_initial_seconds``, ``retry_max_seconds``).

    :param gcp_conn_id: the Airflow connection id.
    :param impersonation_chain: optional service account(s) to impersonate.
    :param project: EE (Cloud) project; defaults to the connection's ``project`` extra or the
        service-account key's project.
    :param api_url: overrides the connection's ``api_url``.
    """

    hook_name = "Google Earth Engine"

    def __init__(
        self,
        gcp_conn_id: str = GoogleBaseHook.default_conn_name,
        impersonation_chain: str | Sequence[str] | None = None,
        project: str | None = None,
        api_url: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(gcp_conn_id=gcp_conn_id, impersonation_chain=impersonation_chain, **kwargs)
        self._project_override = project
        self._api_url_override = api_url

    # ------------------------------------------------------------------ configuration

    @cached_property
    def project(self) -> str:
        """The EE project every request is made for."""
        project = self._project_override or self.get_credentials_and_project_id()[1]
        if not project:
            raise GeeConfigurationError(
                f"Connection {self.gcp_conn_id!r} names no Earth Engine project: set the extra "
                "'project' (a Cloud project registered for Earth Engine) or use a service-account "
                "key that carries 'project_id'."
            )
        if not PROJECT_RE.fullmatch(str(project)):
            raise GeeConfigurationError(
                f"Earth Engine project {project!r} (connection {self.gcp_conn_id!r}) is not a valid Cloud "
                "project id (6-30 characters, lowercase letters, digits and hyphens, starting with a letter; "
                "optionally domain-scoped, 'example.com:my-project'), nor a project number."
            )
        return project

    # ------------------------------------------------------------------ REST plumbing

    @cached_property
    def session(self) -> AuthorizedSession:
        """An HTTP session that adds (and refreshes) the connection's bearer token and names the
        quota project, as the official client does on every call (``X-Goog-User-Project``, ee/data.py):
        EE refuses a person's credentials without one."""
        # credentials that name a quota project must name this one: google-auth would replace the header
        session = AuthorizedSession(bill_to(self.get_credentials(), self.project))
        session.headers[QUOTA_PROJECT_HEADER] = self.project
        return session

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        """Send one EE REST request (``path`` relative to ``{api_url}/v1/``) and return its JSON.

        Transient failures are retried with backoff; others raise :class:`EarthEngineError` with
        EE's message.
        """
        url = f"{self.api_url}/v1/{path}"

        def once() -> dict[str, Any]:
            try:
                resp = self.session.request(method, url, params=params, json=json, timeout=timeout)
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise EarthEngineError(
                    f"{method} {url} could not complete: {type(exc).__name__}", retryable=True
                ) from exc
            if resp.status_code >= 400:
                raise EarthEngineError.from_response(resp.status_code, resp.content)
            return resp.json() if resp.content else {}

        return call_with_retry(once, self.retry_policy, f"{method} {path}")

    def pages(self, path: str, page_size: int, max_pages: int | None = None) -> Iterator[dict[str, Any]]:
        """The pages of a listing (``pageSize``/``pageToken``/``nextPageToken``), lazily."""
        params: dict[str, Any] = {"pageSize": page_size}
        for _ in itertools.count() if max_pages is None else range(max_pages):
            page = self.request("GET", path, params=params)
            yield page
            if not page.get("nextPageToken"):
                return
            params = {"pageSize": page_size, "pageToken": page["nextPageToken"]}

    # ------------------------------------------------------------------ names

    def operation_name(self, operation: str) -> str:
        """Full operation name from a name or a bare id."""
        if operation.startswith("projects/"):
            return operation
        return f"projects/{self.project}/operations/{operation}"

    def asset_name(self, asset_id: str) -> str:
        """Full asset name ``projects/P/assets/...`` of an asset this job writes or owns: a full
        name, a legacy ``users/...`` id, or a path relative to the connection's project.

        Inputs read from the catalogue resolve differently: see :meth:`input_asset_name`.
        """
        asset_id = asset_id.strip().rstrip("/")
        if not asset_id:
            raise GeeConfigurationError("An empty asset id was given; name the asset, e.g. 'folder/table'.")
        if asset_id.startswith("projects/"):
            parts = asset_id.split("/")
            if len(parts) < 3 or parts[2] != "assets":
                raise GeeConfigurationError(
                    f"Asset id {asset_id!r} is not of the form 'projects/<project>/assets/<path>'."
                )
            return asset_id
        if asset_id.startswith("users/"):
            return f"projects/earthengine-legacy/assets/{asset_id}"
        return f"projects/{self.project}/assets/{asset_id}"

    @staticmethod
    def input_asset_name(asset_id: str) -> str:
        """Full name of an asset to read, resolved as ``ee`` resolves it
        (``ee/_cloud_api_utils.convert_asset_id_to_asset_name``): a relative id such as
        ``USGS/SRTMGL1_003`` is a public catalogue asset (``projects/earthengine-public/assets/...``),
        ``users/...`` a legacy one; give your own project's inputs in full
        (``projects/P/assets/...``)."""
        asset_id = asset_id.strip().rstrip("/")
        if not asset_id:
            raise GeeConfigurationError("An empty asset id was given; name the asset, e.g. 'USGS/SRTMGL1_003'.")
        if re.fullmatch(r"projects/[^/]+/assets/.+", asset_id):
            return asset_id
        if asset_id.split("/")[0] in ("users", "projects"):
            return f"projects/earthengine-legacy/assets/{asset_id}"
        return f"projects/earthengine-public/assets/{asset_id}"

    # ------------------------------------------------------------------ operations

    def get_operation(self, operation: str) -> dict[str, Any]:
        """One operation (an EE batch task) by name or id."""
        return self.request("GET", self.operation_name(operation))

    def list_operations(self, page_size: int = 500, max_pages: int | None = None) -> Iterator[dict[str, Any]]:
        """The operations EE lists for this connection's identity: its own recent tasks only
        (ee/data.py: one "for each task submitted to EE by the current user"; finished ones age
        out), in no documented order, following ``nextPageToken`` (at most ``max_pages`` pages).

        One listing serves many tasks: prefer it to one :meth:`get_operation` per task when many
        are watched at once.
        """
        for page in self.pages(f"projects/{self.project}/operations", page_size, max_pages=max_pages):
            yield from page.get("operations", [])

    def count_active_operations(self) -> int:
        """Tasks this identity has PENDING or RUNNING in EE's queue of the project. EE lists only
        the caller's tasks, in no documented order, so every page is read (up to ``LIST_MAX_PAGES``;
        a longer listing makes the count a lower bound)."""
        return count_active(list(self.list_operations(500, max_pages=LIST_MAX_PAGES)))

    def cancel_operation(self, operation: str) -> None:
        """Ask EE to cancel a task. A task that has ended already is left as it is, whatever EE
        answers for it (its status for this case is not documented)."""
        name = self.operation_name(operation)
        try:
            self.request("POST", f"{name}:cancel", json={})
        except EarthEngineError as exc:
            if exc.retryable or exc.status_code == 404:
                raise
            if not self.get_operation(name).get("done"):
                raise

    # ------------------------------------------------------------------ exports

    def start_export(
        self,
        ee_object: Any,
        *,
        kind: ExportKind,
        destination: Destination,
        request_id: str,
        workload_tag: str | None = None,
        **export_args: Any,
    ) -> dict[str, Any]:
        """Submit one export and return its operation.

        The request body is built by ``ee.batch.Export.<kind>.to<Destination>`` from
        ``export_args`` (EE's own keyword names: ``description``, ``folder``, ``fileNamePrefix``,
        ``bucket``, ``assetId``, ``region``, ``scale``, ``crs``, ``maxPixels``, ``fileFormat``,
        ``fileDimensions``, ``overwrite``, ...). ``request_id`` makes the submission idempotent:
        EE answers a repeated request with the operation it already started, so a retry after a
        lost response never creates a second task. Requires :meth:`initialize_ee` (the EE object
        was built with it). ``workload_tag`` labels the task's EECU in EE's usage reports (as
        ``ee.data.setWorkloadTag`` does for ``Task.start()``).
        """
        import ee

        if kind not in EXPORT_KINDS:
            raise GeeConfigurationError(f"Unknown export kind {kind!r}: use one of {EXPORT_KINDS}.")
        if destination not in DESTINATIONS:
            raise GeeConfigurationError(f"Unknown export destination {destination!r}: use one of {DESTINATIONS}.")
        if export_args.get("assetId"):
            # ee would read a relative id as a public asset; ours are relative to the hook's project.
            export_args["assetId"] = self.asset_name(export_args["assetId"])
            if not export_args["assetId"].startswith(f"projects/{self.project}/assets/"):
                raise GeeConfigurationError(
                    f"Export destination {export_args['assetId']!r} is outside project {self.project!r} of connection "
                    f"{self.gcp_conn_id!r}: give a path relative to the project (e.g. 'exports/tile_1') or use a "
                    "connection for the other project."
                )
        factory = getattr(ee.batch.Export, kind)
        method = {"drive": factory.toDrive, "asset": factory.toAsset, "gcs": factory.toCloudStorage}
        task = method[destination](ee_object, **export_args)
        body = dict(task.config)
        body["expression"] = ee.serializer.encode(body["expression"], for_cloud_api=True)
        body["requestId"] = request_id
        if workload_tag:
            body["workloadTag"] = workload_tag
        return self.request("POST", f"projects/{self.project}/{kind}:export", json=body)

    def project_config(self) -> dict[str, Any]:
        """EE's facts about the project (``projects.getConfig``, ``ee.data.getProjectConfig``):
        ``registrationState``, ``maxConcurrentExports``, ``planMaxConcurrentExports``."""
        return self.request("GET", f"projects/{self.project}/config")

    def token_info(self) -> dict[str, Any]:
        """What the connection's current access token may do, from Google's ``tokeninfo``:
        ``scope`` (space-separated), ``email`` when the token names one, ``expires_in``."""
        credentials = self.get_credentials()
        if not credentials.valid:
            credentials.refresh(Request())
        # in the body, not the URL: a failed request's message carries its URL into logs
        resp = requests.post(self.tokeninfo_uri, data={"access_token": credentials.token}, timeout=30)
        if resp.status_code >= 400:
            raise EarthEngineError.from_response(resp.status_code, resp.content)
        return resp.json()

    def compute_value(self, expression: Any) -> Any:
        """Evaluate an EE object (or an already serialized expression) and return the result."""
        if not isinstance(expression, dict):
            import ee

            expression = ee.serializer.encode(expression, for_cloud_api=True)
        result = self.request("POST", f"projects/{self.project}/value:compute", json={"expression": expression})
        return result.get("result")

    # ------------------------------------------------------------------ assets

    def get_asset(self, asset_id: str) -> dict[str, Any] | None:
        """An asset's metadata, or ``None`` when it does not exist."""
        try:
            return self.request("GET", self.asset_name(asset_id))
        except EarthEngineError as exc:
            if exc.status_code == 404:
                return None
            raise

    def create_folder(self, folder_id: str, *, parents: bool = True) -> str:
        """Create a folder (and, with ``parents``, every missing folder above it); return its name.

        A folder that exists already is fine.
        """
        name = self.asset_name(folder_id)
        root_len = len(name.split("/")[:3])  # projects/P/assets
        parts = name.split("/")
        targets = ["/".join(parts[: i + 1]) for i in range(root_len, len(parts)) if parents or i == len(parts) - 1]
        for target in targets:
            existing = self.get_asset(target)
            if existing is not None:
                if existing.get("type") != "FOLDER" and target != name:
                    raise GeeConfigurationError(f"{target!r} exists and is a {existing.get('type')}, not a folder.")
                continue
            project_root = "/".join(parts[:2])
            relative = target.split("/assets/", 1)[1]
            try:
                self.request("POST", f"{project_root}/assets", params={"assetId": relative}, json={"type": "FOLDER"})
            except EarthEngineError as exc:
                # created meanwhile by someone else: EE's status for it is not documented, so look
                if exc.retryable or (self.get_asset(target) or {}).get("type") != "FOLDER":
                    raise
        return name

    def list_assets(
        self,
        parent: str,
        *,
        recursive: bool = False,
        pattern: str | None = None,
        page_size: int = 1000,
    ) -> Iterator[dict[str, Any]]:
        """Assets under ``parent`` (a folder, or the project root ``projects/P``), paged.

        :param recursive: descend into sub-folders (folders themselves are yielded too).
        :param pattern: shell-style pattern matched against the path relative to ``parent``.
        """
        root = parent.rstrip("/")
        if root.startswith("projects/") and root.count("/") == 1:  # the project's root
            prefix, stack = f"{root}/assets/", [f"{root}:listAssets"]
        else:
            name = self.asset_name(root)
            prefix, stack = f"{name}/", [f"{name}:listAssets"]
        while stack:
            for page in self.pages(stack.pop(), page_size):
                for asset in page.get("assets", []):
                    relative = asset["name"].removeprefix(prefix)
                    if pattern is None or fnmatch.fnmatchcase(relative, pattern):
                        yield asset
                    if recursive and asset.get("type") == "FOLDER":
                        stack.append(f"{asset['name']}:listAssets")

    def list_features(self, table_id: str, *, page_size: int = 1000) -> Iterator[dict[str, Any]]:
        """The features of a table asset as GeoJSON dicts, page by page (no ``ee`` needed)."""
        for page in self.pages(f"{self.asset_name(table_id)}:listFeatures", page_size):
            yield from page.get("features", [])

    def copy_asset(self, source_id: str, destination_id: str, *, overwrite: bool = False) -> dict[str, Any]:
        """Copy one asset; returns the new asset."""
        return self.request(
            "POST",
            f"{self.asset_name(source_id)}:copy",
            json={"destinationName": self.asset_name(destination_id), "overwrite": overwrite},
        )

    def set_asset_properties(self, asset_id: str, properties: dict[str, Any]) -> dict[str, Any]:
        """Set (or, with ``None``, remove) properties of an asset, leaving its other properties as
        they are (``ee.data.setAssetProperties``: one ``properties."name"`` mask path each)."""
        paths = [f'properties."{key}"' for key in properties]
        body = {"asset": {"properties": properties}, "updateMask": {"paths": paths}}
        return self.request("PATCH", self.asset_name(asset_id), json=body)

    def delete_asset(self, asset_id: str, *, missing_ok: bool = False) -> None:
        """Delete one asset (a folder must be empty)."""
        try:
            self.request("DELETE", self.asset_name(asset_id))
        except EarthEngineError as exc:
            if not (missing_ok and exc.status_code == 404):
                raise

    def delete_tree(self, folder: str, *, pattern: str = "*", dry_run: bool = True) -> list[str]:
        """Delete the assets under ``folder`` whose relative path matches ``pattern`` (children
        before their folders), or with ``dry_run`` only list them. Refuses anything that could reach
        outside ``folder``: patterns with ``..`` or a leading ``/``, and any listed name not under it.
        """
        check_relative_pattern(pattern)
        root = self.asset_name(folder)
        if self.get_asset(root) is None:
            raise GeeConfigurationError(f"Asset folder {root!r} does not exist.")
        doomed = [a["name"] for a in self.list_assets(root, recursive=True, pattern=pattern)]
        outside = [n for n in doomed if not n.startswith(root + "/")]
        if outside:
            raise GeeConfigurationError(f"Refusing to delete {outside[:3]}: not inside {root!r}.")
        doomed.sort(key=lambda n: n.count("/"), reverse=True)  # deepest first: folders empty out
        for name in doomed:
            if dry_run:
                self.log.info("Would delete %s", name)
            else:
                self.delete_asset(name, missing_ok=True)
                self.log.info("Deleted %s", name)
        return doomed

    # ------------------------------------------------------------------ the ee client

    def initialize_ee(self) -> None:
        """Initialize the process-global ``ee`` client for this connection (once per process).

        The discovery document and the algorithm list it needs come from the machine's cache
        (:mod:`airflow_provider_gee.utils.ee_cache`) while fresh (``client_cache_seconds``), so
        the task processes of a worker download them about once an hour, not once each.
        """
        global _ee_initialized_for
        import ee

        key = (self.gcp_conn_id, self.project, self.api_url, str(self.impersonation_chain))
        with _ee_lock:
            if _ee_initialized_for == key:
                return
            if _ee_initialized_for is not None:
                ee.Reset()
            ee.data.setMaxRetries(self.retry_policy.max_retries)
            self.log.info("Initializing the ee client for project %s at %s", self.project, self.api_url)
            from airflow_provider_gee.utils.ee_cache import CachingTransport

            ee.Initialize(
                credentials=self.get_credentials(),
                project=self.project,
                url=None if self.api_url == GOOGLE_EE_API_URL else self.api_url,  # high-volume: given
                http_transport=CachingTransport(self.client_cache_seconds),
            )
            _ee_initialized_for = key


class EarthEngineAsyncHook(GoogleBaseAsyncHook):
    """The asyncio side of :class:`EarthEngineHook`, for triggers: plain REST over aiohttp with
    the connection's (refreshed) bearer token, never ``ee.Initialize`` (``ee`` is process-global,
    and one triggerer serves many connections).

    :param gcp_conn_id: the Airflow connection id.
    :param impersonation_chain: optional service account(s) to impersonate.
    """

    sync_hook_class = EarthEngineHook

    def __init__(
        self,
        gcp_conn_id: str = GoogleBaseHook.default_conn_name,
        impersonation_chain: str | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(gcp_conn_id=gcp_conn_id, impersonation_chain=impersonation_chain, **kwargs)
        self.gcp_conn_id = gcp_conn_id  # GoogleBaseAsyncHook keeps it only inside its kwargs
        self._credentials: Any = None
        self._refreshing = asyncio.Lock()
        self._settings: tuple[str, str, RetryPolicy] | None = None

    async def settings(self) -> tuple[str, str, RetryPolicy]:
        """(api_url, project, retry policy) of the connection, read once."""
        if self._settings is None:
            hook: EarthEngineHook = await self.get_sync_hook()
            self._settings = await sync_to_async(lambda: (hook.api_url, hook.project, hook.retry_policy))()
        return self._settings

    async def access_token(self) -> str:
        """The connection's access token, refreshed only when it is not valid.

        The credentials are the sync hook's (``GoogleBaseHook``: key, ADC, impersonation), and they
        are refreshed as google-auth's own sessions do it: when they hold no valid token. (The
        Google provider's async token refreshes on first use whatever the token's state.)
        """
        if self._credentials is None:
            hook: EarthEngineHook = await self.get_sync_hook()
            self._credentials = await sync_to_async(hook.get_credentials)()
        async with self._refreshing:
            if not self._credentials.valid:
                try:
                    await sync_to_async(self._credentials.refresh)(Request())
                except google.auth.exceptions.GoogleAuthError as exc:
                    # a revoked key or a deleted account never heals; a network hiccup does
                    retryable = isinstance(exc, google.auth.exceptions.TransportError) or bool(
                        getattr(exc, "retryable", False)
                    )
                    raise EarthEngineError(
                        f"Connection {self.gcp_conn_id!r} could not get an access token: {exc}", retryable=retryable
                    ) from exc
        return self._credentials.token

    async def request(
        self,
        session: aiohttp.ClientSession,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> dict[str, Any]:
        """The asyncio twin of :meth:`EarthEngineHook.request` (same retries, same errors)."""
        api_url, project, policy = await self.settings()
        url = f"{api_url}/v1/{path}"

        async def once() -> dict[str, Any]:
            headers = {"Authorization": f"Bearer {await self.access_token()}", QUOTA_PROJECT_HEADER: project}
            try:
                async with session.request(method, url, params=params, json=json, headers=headers) as resp:
                    body = await resp.read()
                    if resp.status >= 400:
                        raise EarthEngineError.from_response(resp.status, body)
                    return json_module.loads(body) if body else {}
            except (TimeoutError, aiohttp.ClientConnectionError) as exc:
                raise EarthEngineError(f"{method} {url} could not complete: {exc!r}", retryable=True) from exc

        return await async_call_with_retry(once, policy, f"{method} {path}")
