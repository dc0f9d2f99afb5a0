"""The emulator's HTTP server: EE REST v1, Drive v3, the OAuth token endpoint and admin routes on
one loopback port.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import operator
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from gee_emulator.algorithms import algorithms_json
from gee_emulator.auth import (
    DEFAULT_USER_SCOPES,
    DRIVE_SCOPE,
    GCLOUD_SCOPES,
    Identity,
    TokenAuthority,
    generate_service_account_key,
)
from gee_emulator.discovery import discovery_document
from gee_emulator.drive_store import FOLDER_MIME, ROOT_ID, DriveError, DriveStore
from gee_emulator.ee_state import ApiError, EarthEngineState, EmulatorConfig
from gee_emulator.faults import FaultInjector
from gee_emulator.identity_routes import register as register_identity_routes

Handler = Callable[["RequestHandler", re.Match[str]], None]
_routes: list[tuple[str, re.Pattern[str], str, Handler]] = []


def route(method: str, pattern: str, name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        _routes.append((method, re.compile(f"^{pattern}$"), name, fn))
        return fn

    return register


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class EmulatorServer:
    """A running emulator.

    :param config: EE behaviour (project, concurrency, task duration, quota, shard size, GCS URL).
    :param host: interface to bind; loopback only unless ``allow_remote`` (for containers).
    :param port: 0 picks a free port.
    :param state_dir: keep state (operations, assets, Drive) across restarts in this folder.
    :param require_auth: every API route needs a bearer token from ``/token`` signed by a trusted key,
        and every admin route (``/_emulator/...``, health excepted) the admin token
        (:attr:`admin_token`): they serve the private key and can trust new keys.
    :param allow_remote: allow a non-loopback ``host`` (only inside an isolated container network).
    :param public_url: the URL clients reach the emulator at, when it is not ``http://host:port``.
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        state_dir: str | Path | None = None,
        require_auth: bool = False,
        allow_remote: bool = False,
        public_url: str | None = None,
    ) -> None:
        if not allow_remote and not is_loopback(host):
            raise ValueError(
                f"Refusing to bind {host!r}: the emulator listens on loopback only "
                "(pass allow_remote / --allow-remote inside an isolated container network)."
            )
        if not is_loopback(host) and not require_auth:
            # its admin routes hand out the generated private key and trust new keys, and its
            # token endpoint signs for anyone: off loopback, only with tokens checked
            raise ValueError(
                f"Refusing to bind {host!r} without require_auth / --require-auth: anyone on that network could "
                "read the emulator's private key from its admin routes and act as any identity."
            )
        self.config = config or EmulatorConfig()
        self.require_auth = require_auth
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if state_dir:
            self.state_dir = Path(state_dir)
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="gee-emulator-")
            self.state_dir = Path(self._tmp.name)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.faults = FaultInjector()
        self.drive = DriveStore(
            self.state_dir / "blobs", self.config.drive_quota_bytes, self.config.drive_listing_lag_seconds
        )
        work = self.state_dir / "work"
        work.mkdir(exist_ok=True)
        self.ee = EarthEngineState(self.config, self.drive, self.faults, work)
        self.httpd = _Server((host, port), RequestHandler)
        self.httpd.emulator = self
        bound_host, self.port = self.httpd.server_address[:2]
        self.host = str(bound_host)  # an IP socket's address is text (bytes only for AF_UNIX)
        display_host = f"[{self.host}]" if ":" in self.host else self.host
        # the URL clients use (in the connection and the key's token_uri): in a container network
        # it is the service's name, not the bind address
        self.url = (public_url or f"http://{display_host}:{self.port}").rstrip("/")
        self.auth = TokenAuthority(f"{self.url}/token")
        self.service_account_key = generate_service_account_key(f"{self.url}/token", self.config.project)
        self.auth.trust(self.service_account_key)
        #: bearer token of the admin routes when ``require_auth`` (``--admin-token-file``)
        self.admin_token = secrets.token_urlsafe(32)
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._state_file = self.state_dir / "state.json" if state_dir else None
        if self._state_file and self._state_file.exists():
            saved = json.loads(self._state_file.read_text())
            self.drive.restore(saved.get("drive", {}))
            self.ee.restore(saved.get("ee", {}))
        self.ee._on_change = self._dirty.set

    # ------------------------------------------------------------ lifecycle

    def start(self) -> EmulatorServer:
        t = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        t.start()
        self._threads.append(t)
        if self._state_file:
            saver = threading.Thread(target=self._save_loop, daemon=True)
            saver.start()
            self._threads.append(saver)
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.save()
        with self.ee.lock:
            for op in self.ee.operations.values():
                op.cancel_requested = op.cancel_requested or not self._state_file
        if self._tmp:
            self._tmp.cleanup()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def save(self) -> None:
        if not self._state_file:
            return
        data = {"ee": self.ee.snapshot(), "drive": self.drive.snapshot()}
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self._state_file)

    def _save_loop(self) -> None:
        while not self._stopping.is_set():
            if self._dirty.wait(0.5):
                self._dirty.clear()
                self.save()

    # ------------------------------------------------------------ helpers for tests and the CLI

    def reset(self) -> None:
        self.ee.reset()
        self.drive.reset()
        self.faults.clear()

    def stats(self) -> dict[str, Any]:
        with self.ee.lock:
            return {
                "requests": dict(sorted(self.ee.stats.requests.items())),
                "peak_in_flight": self.ee.stats.peak_in_flight,
                "in_flight": self.ee.in_flight,
                "operations": len(self.ee.operations),
                "operations_by_state": self.ee.states(),
                "export_requests": self.ee.stats.export_requests,
                "assets": len(self.ee.assets),
                "drive_bytes": self.drive.used_bytes,
                "drive_peak_bytes": self.drive.peak_bytes,
                "drive_files": sum(1 for f in self.drive.files.values() if f.mimeType != FOLDER_MIME),
                "bytes_downloaded": self.ee.stats.bytes_downloaded,
                "eecu_seconds_by_workload_tag": self.ee.usage_by_workload_tag(),
                "faults": self.faults.rules(),
            }

    def connection(
        self, conn_id: str = "google_cloud_default", *, user: bool = False, ee_credentials: str | None = None
    ) -> dict[str, Any]:
        """An Airflow connection (JSON form) that points every hook of this provider here: with
        the generated service-account key, or (``user``) with no key, so that the hooks use
        Application Default Credentials (``GOOGLE_APPLICATION_CREDENTIALS``, see
        :meth:`user_credentials`), as a connection for a person's login does in production, or
        the EE credentials file at ``ee_credentials`` (see :meth:`ee_credentials`)."""
        extra: dict[str, Any] = {"project": self.config.project, "api_url": self.url, "num_retries": 5}
        if ee_credentials:
            extra["ee_credentials"] = ee_credentials
        elif not user:
            extra["keyfile_dict"] = json.dumps(self.service_account_key)
        return {
            "conn_type": "google_cloud_platform",
            "description": f"Local Earth Engine/Drive emulator at {self.url}",
            "extra": extra,
        }

    def user_credentials(
        self, email: str = "analyst@example.com", scopes: tuple[str, ...] | None = None, client: str = "gcloud"
    ) -> dict[str, Any]:
        """An ``authorized_user`` credentials file's content for a person (as ``gcloud auth
        application-default login`` writes it); point ``GOOGLE_APPLICATION_CREDENTIALS`` at it.

        :param client: ``gcloud`` (gcloud's own OAuth client: Cloud scopes only, a Drive scope is
            refused as Google's login page refuses it) or ``own`` (a client of the person's own,
            ``--client-id-file``: Drive too).
        :param scopes: the scopes asked for (default: the client's EE scopes).
        """
        if scopes is None:
            scopes = GCLOUD_SCOPES if client == "gcloud" else DEFAULT_USER_SCOPES
        return self.auth.user_credentials(email, scopes, self.config.project, client)

    def ee_credentials(self, email: str = "analyst@example.com") -> dict[str, Any]:
        """The content of the file ``earthengine authenticate`` writes for a person
        (``~/.config/earthengine/credentials``): EE's client, EE's scopes, the project."""
        return self.auth.ee_credentials(email, self.config.project)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    emulator: EmulatorServer


def _error_body(code: int, message: str, status: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status}}


class RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out as separate writes: without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK add ~40 ms to every keep-alive request
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet: stats say what happened
        pass

    # ------------------------------------------------------------ plumbing

    @property
    def emu(self) -> EmulatorServer:
        return self.server.emulator

    @property
    def identity(self) -> Identity | None:
        """The identity of the request's bearer token, if it carries a valid one."""
        return self.emu.auth.identity(self.headers.get("Authorization"))

    @property
    def caller(self) -> str | None:
        """The e-mail of the request's identity."""
        identity = self.identity
        return identity.email if identity else None

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        path = unquote(split.path)
        self._body: bytes | None = None
        found = next(
            ((name, fn, match) for m, pattern, name, fn in _routes if m == method and (match := pattern.match(path))),
            None,
        )
        if found is None:
            self._discard_body()
            self.send_json(404, _error_body(404, f"No route for {method} {split.path}.", "NOT_FOUND"))
            return
        name, fn, match = found
        if name == "drive.files.get" and self.query.get("alt") == "media":
            name = "drive.files.download"
        with self.emu.ee.lock:
            self.emu.ee.stats.requests[name] += 1
        if self.emu.require_auth and name.startswith("admin.") and name != "admin.health":
            given = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), self.emu.admin_token.encode()):
                self._discard_body()
                message = "Admin routes need the emulator's admin token (--admin-token-file)."
                self.send_json(401, _error_body(401, message, "UNAUTHENTICATED"))
                return
        needs_token = self.emu.require_auth and not name.startswith(("admin.", "oauth.", "metadata.", "sts."))
        if needs_token and not self.emu.auth.valid(self.headers.get("Authorization")):
            self._discard_body()
            message = "Request had invalid authentication credentials."
            self.send_json(401, _error_body(401, message, "UNAUTHENTICATED"))
            return
        identity = self.identity
        if (
            name.startswith("ee.")
            and name != "ee.discovery"  # the official client sends none for discovery (ee/_cloud_api_utils.py)
            and identity
            and not identity.is_service_account
            and not self.headers.get("X-Goog-User-Project")
        ):
            self._discard_body()
            self.send_json(403, _error_body(403, QUOTA_PROJECT_REQUIRED, "PERMISSION_DENIED"))
            return
        denied = self._project_problem(name, match)
        if denied:
            self._discard_body()
            self.send_json(403, denied)
            return
        if name.startswith("drive.") and identity and not identity.has_scope_prefix(DRIVE_SCOPE):
            # Google: a token without a Drive scope is refused by Drive whatever the identity
            self._discard_body()
            self.send_json(403, _scope_error())
            return
        fault = None if name.startswith("admin.") else self.emu.faults.take("http", name)
        if fault and fault.delay:  # a slow answer, not an error
            time.sleep(fault.delay)
            fault = None
        if fault and not fault.after:
            self._discard_body()
            self.send_json(fault.status, _error_body(fault.status, fault.message, _status_name(fault.status)))
            return
        try:
            if fault:  # handled, then the answer is "lost"
                self._suppress = True
                fn(self, match)
                self._suppress = False
                self.send_json(fault.status, _error_body(fault.status, fault.message, _status_name(fault.status)))
            else:
                fn(self, match)
        except ApiError as exc:
            self._suppress = False
            self.send_json(exc.status_code, _error_body(exc.status_code, exc.message, exc.status))
        except DriveError as exc:
            self._suppress = False
            self.send_json(
                exc.status,
                {
                    "error": {
                        "code": exc.status,
                        "message": exc.message,
                        "errors": [{"reason": exc.reason, "message": exc.message}],
                    }
                },
            )
        except (ValueError, KeyError, TypeError) as exc:
            self._suppress = False
            self.send_json(400, _error_body(400, f"Invalid request: {exc}", "INVALID_ARGUMENT"))

    _suppress = False

    def _project_problem(self, name: str, match: re.Match[str]) -> dict[str, Any] | None:
        """Google's refusal of an EE call for its project: a quota project (``X-Goog-User-Project``)
        the caller may not use (USER_PROJECT_DENIED), or a project not registered for EE."""
        if not name.startswith("ee.") or name == "ee.discovery":
            return None
        project = match.groupdict().get("project")
        quota = self.headers.get("X-Goog-User-Project")
        cfg = self.emu.config
        if quota and quota not in {cfg.project, project, *cfg.quota_projects}:
            body = _error_body(403, USER_PROJECT_DENIED.format(project=quota), "PERMISSION_DENIED")
            body["error"]["details"] = [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "USER_PROJECT_DENIED",
                 "domain": "googleapis.com", "metadata": {"consumer": f"projects/{quota}"}}
            ]  # fmt: skip
            return body
        if project == cfg.project and cfg.registration_state == "NOT_REGISTERED" and name != "ee.projects.getConfig":
            return _error_body(403, NOT_REGISTERED.format(project=project), "PERMISSION_DENIED")
        return None

    def body_bytes(self) -> bytes:
        if self._body is None:
            length = int(self.headers.get("Content-Length") or 0)
            self._body = self.rfile.read(length) if length else b""
        return self._body

    def _discard_body(self) -> None:
        self.body_bytes()

    def json_body(self) -> dict[str, Any]:
        raw = self.body_bytes()
        return json.loads(raw) if raw else {}

    def send_json(self, status: int, data: Any) -> None:
        if self._suppress:
            return
        payload = json.dumps(data).encode()
        self.send_bytes(status, payload, "application/json; charset=UTF-8")

    def send_bytes(self, status: int, payload: bytes, content_type: str) -> None:
        if self._suppress:
            return
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def send_empty(self, status: int = 204) -> None:
        if self._suppress:
            return
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


def _status_name(code: int) -> str:
    return {
        429: "RESOURCE_EXHAUSTED",
        500: "INTERNAL",
        502: "UNAVAILABLE",
        503: "UNAVAILABLE",
        504: "DEADLINE_EXCEEDED",
        400: "INVALID_ARGUMENT",
        403: "PERMISSION_DENIED",
        404: "NOT_FOUND",
    }.get(code, "UNKNOWN")


def _send_page(h: RequestHandler, items: list[Any], field: str, default: int, maximum: int, **extra: Any) -> None:
    """Answer one page of a listing (``pageSize``/``pageToken``; ``nextPageToken`` while more)."""
    size = min(int(h.query.get("pageSize") or default), maximum) or default
    start = int(h.query.get("pageToken") or 0)
    out: dict[str, Any] = {**extra, field: items[start : start + size]}
    if start + size < len(items):
        out["nextPageToken"] = str(start + size)
    h.send_json(200, out)


# ============================================================ Earth Engine routes

_P = r"/v1/projects/(?P<project>[^/:]+)"


@route("GET", r"/\$discovery/rest", "ee.discovery")
def _discovery(h: RequestHandler, m: re.Match[str]) -> None:
    h.send_json(200, discovery_document(h.emu.url + "/"))


@route("GET", _P + r"/algorithms", "ee.algorithms.list")
def _algorithms_list(h: RequestHandler, m: re.Match[str]) -> None:
    h.send_bytes(200, algorithms_json(), "application/json; charset=UTF-8")


def _export(h: RequestHandler, m: re.Match[str]) -> None:
    h.send_json(200, h.emu.ee.submit_export(m["project"], m["kind"], h.json_body(), caller=h.caller))


for _kind in ("image", "table"):
    route("POST", _P + rf"/(?P<kind>{_kind}):export", f"ee.{_kind}.export")(_export)


@route("POST", _P + r"/value:compute", "ee.value.compute")
def _compute(h: RequestHandler, m: re.Match[str]) -> None:
    expression = h.json_body().get("expression")
    if not isinstance(expression, dict):
        raise ApiError(400, "Invalid JSON payload: 'expression' is required.", "INVALID_ARGUMENT")
    h.send_json(200, {"result": h.emu.ee.compute(expression)})


@route("GET", _P + r"/config", "ee.projects.getConfig")
def _project_config(h: RequestHandler, m: re.Match[str]) -> None:
    """``projects.getConfig`` (ProjectConfig, EE REST reference): registration and export limits."""
    cfg = h.emu.config
    h.send_json(
        200,
        {
            "name": f"projects/{m['project']}/config",
            "registrationState": cfg.registration_state,
            "maxConcurrentExports": cfg.ee_concurrency,
            "planMaxConcurrentExports": max(cfg.ee_concurrency, cfg.plan_max_concurrent_exports or 0),
        },
    )


@route("GET", _P + r"/operations", "ee.operations.list")
def _operations_list(h: RequestHandler, m: re.Match[str]) -> None:
    if h.query.get("filter"):
        raise ApiError(400, "The emulator does not support 'filter' on operations.list.", "INVALID_ARGUMENT")
    ops = [op.resource() for op in h.emu.ee.list_operations(m["project"], caller=h.caller)]
    _send_page(h, ops, "operations", 500, 500)


@route("GET", _P + r"/operations/(?P<id>[^/:]+)", "ee.operations.get")
def _operations_get(h: RequestHandler, m: re.Match[str]) -> None:
    h.send_json(200, h.emu.ee.get_operation(f"projects/{m['project']}/operations/{m['id']}").resource())


@route("POST", _P + r"/operations/(?P<id>[^/:]+):cancel", "ee.operations.cancel")
def _operations_cancel(h: RequestHandler, m: re.Match[str]) -> None:
    h.body_bytes()
    h.emu.ee.cancel(f"projects/{m['project']}/operations/{m['id']}")
    h.send_json(200, {})


@route("GET", _P + r":listAssets", "ee.projects.listAssets")
def _project_list_assets(h: RequestHandler, m: re.Match[str]) -> None:
    _list_children(h, f"projects/{m['project']}/assets")


@route("GET", _P + r"/assets/(?P<path>.+):listAssets", "ee.assets.listAssets")
def _assets_list(h: RequestHandler, m: re.Match[str]) -> None:
    name = f"projects/{m['project']}/assets/{m['path']}"
    asset = h.emu.ee.get_asset(name)
    if asset["type"] not in ("FOLDER", "IMAGE_COLLECTION"):
        raise ApiError(400, f"Asset '{name}' is not a folder or collection.", "INVALID_ARGUMENT")
    _list_children(h, name)


def _list_children(h: RequestHandler, parent: str) -> None:
    if h.query.get("filter"):  # ignoring it would list assets the caller filtered out
        raise ApiError(400, "The emulator does not support 'filter' on listAssets.", "INVALID_ARGUMENT")
    _send_page(h, h.emu.ee.children(parent), "assets", 1000, 10000)


@route("GET", _P + r"/assets/(?P<path>.+):listFeatures", "ee.assets.listFeatures")
def _assets_list_features(h: RequestHandler, m: re.Match[str]) -> None:
    features = h.emu.ee.table_features(f"projects/{m['project']}/assets/{m['path']}")
    _send_page(h, features, "features", 1000, 10000, type="FeatureCollection")


@route("POST", _P + r"/assets", "ee.assets.create")
def _assets_create(h: RequestHandler, m: re.Match[str]) -> None:
    overwrite = h.query.get("overwrite", "").lower() == "true"
    h.send_json(200, h.emu.ee.create_asset(m["project"], h.query.get("assetId", ""), h.json_body(), overwrite))


@route("POST", _P + r"/assets/(?P<path>.+):copy", "ee.assets.copy")
def _assets_copy(h: RequestHandler, m: re.Match[str]) -> None:
    body = h.json_body()
    source = f"projects/{m['project']}/assets/{m['path']}"
    h.send_json(200, h.emu.ee.copy_asset(source, body["destinationName"], bool(body.get("overwrite"))))


@route("POST", _P + r"/assets/(?P<path>.+):move", "ee.assets.move")
def _assets_move(h: RequestHandler, m: re.Match[str]) -> None:
    source = f"projects/{m['project']}/assets/{m['path']}"
    h.send_json(200, h.emu.ee.move_asset(source, h.json_body()["destinationName"]))


@route("PATCH", _P + r"/assets/(?P<path>.+)", "ee.assets.patch")
def _assets_patch(h: RequestHandler, m: re.Match[str]) -> None:
    body = h.json_body()
    paths = (body.get("updateMask") or {}).get("paths") or []
    asset = h.emu.ee.update_asset(f"projects/{m['project']}/assets/{m['path']}", body.get("asset") or {}, paths)
    h.send_json(200, asset)


@route("GET", _P + r"/assets/(?P<path>.+)", "ee.assets.get")
def _assets_get(h: RequestHandler, m: re.Match[str]) -> None:
    h.send_json(200, h.emu.ee.get_asset(f"projects/{m['project']}/assets/{m['path']}"))


@route("DELETE", _P + r"/assets/(?P<path>.+)", "ee.assets.delete")
def _assets_delete(h: RequestHandler, m: re.Match[str]) -> None:
    h.emu.ee.delete_asset(f"projects/{m['project']}/assets/{m['path']}")
    h.send_json(200, {})


# ============================================================ Drive routes

_DRIVE = r"/drive/v3"
#: Google's answer to a person's credentials (ADC) that name no quota project
QUOTA_PROJECT_REQUIRED = (
    "Your application is authenticating by using local Application Default Credentials. The "
    "earthengine.googleapis.com API requires a quota project, which is not set by default. To learn how to set "
    "your quota project, see https://cloud.google.com/docs/authentication/adc-troubleshooting/user-creds ."
)


#: Google's answer to a quota project the caller lacks ``serviceusage.services.use`` on
USER_PROJECT_DENIED = (
    "Caller does not have required permission to use project {project}. Grant the caller the "
    "roles/serviceusage.serviceUsageConsumer role, or a custom role with the serviceusage.services.use "
    "permission, by visiting https://console.developers.google.com/iam-admin/iam/project?project={project} "
    "and then retry. Propagation of the new permission may take a few minutes."
)
#: EE's answer for a project that is not registered to use it
NOT_REGISTERED = (
    "Project {project} is not registered to use Earth Engine. Visit "
    "https://console.cloud.google.com/earth-engine/configuration?project={project} to register your project."
)


def _scope_error() -> dict[str, Any]:
    """Google's answer to a token without the API's scope (ErrorInfo ``ACCESS_TOKEN_SCOPE_INSUFFICIENT``)."""
    body = _error_body(403, "Request had insufficient authentication scopes.", "PERMISSION_DENIED")
    body["error"]["details"] = [
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
         "domain": "googleapis.com"}
    ]  # fmt: skip
    body["error"]["errors"] = [
        {"message": "Insufficient Permission", "domain": "global", "reason": "insufficientPermissions"}
    ]
    return body


@route("GET", _DRIVE + r"/files", "drive.files.list")
def _drive_list(h: RequestHandler, m: re.Match[str]) -> None:
    found = h.emu.drive.list(h.query.get("q"))
    for key in reversed([k.strip() for k in h.query.get("orderBy", "").split(",") if k.strip()]):
        field, _, direction = key.partition(" ")
        attr = {"name": "name", "createdTime": "createdTime", "modifiedTime": "createdTime"}.get(field)
        if attr is None:
            raise DriveError(400, f"Invalid Value: unsupported orderBy key {field!r}", "invalid")
        found.sort(key=operator.attrgetter(attr), reverse=direction.strip().lower() == "desc")
    files = [f.resource() for f in found]
    _send_page(h, files, "files", 100, 1000, kind="drive#fileList")


@route("POST", _DRIVE + r"/files", "drive.files.create")
def _drive_create(h: RequestHandler, m: re.Match[str]) -> None:
    body = h.json_body()
    if body.get("mimeType") != FOLDER_MIME:
        raise DriveError(400, "The emulator creates folders only through files.create.", "invalid")
    parents = body.get("parents") or [ROOT_ID]
    h.send_json(200, h.emu.drive.create_folder(str(body.get("name", "Untitled")), parents[0]).resource())


@route("GET", _DRIVE + r"/files/(?P<id>[^/]+)", "drive.files.get")
def _drive_get(h: RequestHandler, m: re.Match[str]) -> None:
    f = h.emu.drive.get(m["id"])
    if h.query.get("alt") != "media":
        h.send_json(200, f.resource())
        return
    _download(h, f.id, f.name, int(f.size or 0))


def _download(h: RequestHandler, file_id: str, name: str, total: int) -> None:
    start, end, status = 0, total - 1, 200
    rng = h.headers.get("Range")
    if rng:
        mm = re.match(r"bytes=(\d*)-(\d*)$", rng.strip())
        if not mm:
            raise DriveError(416, f"Invalid Range header {rng!r}.", "invalidRange")
        if mm[1]:
            start = int(mm[1])
            end = min(int(mm[2]), total - 1) if mm[2] else total - 1
        else:  # suffix range
            start = max(0, total - int(mm[2]))
        if start > end and total:
            raise DriveError(416, "Requested range not satisfiable.", "requestedRangeNotSatisfiable")
        status = 206
    fault = h.emu.faults.take("download", name)
    length = max(0, end - start + 1)
    h.send_response(status)
    h.send_header("Content-Type", "application/octet-stream")
    h.send_header("Content-Length", str(length))
    if status == 206:
        h.send_header("Content-Range", f"bytes {start}-{end}/{total}")
    h.end_headers()
    sent = 0
    with h.emu.drive.blob_path(file_id).open("rb") as fh:
        fh.seek(start)
        while sent < length:
            chunk = fh.read(min(1 << 20, length - sent))
            if not chunk:
                break
            if fault and fault.mode == "cut" and sent + len(chunk) > fault.after_bytes:
                h.wfile.write(chunk[: max(0, fault.after_bytes - sent)])
                h.wfile.flush()
                h.close_connection = True
                h.connection.shutdown(2)
                return
            if fault and fault.mode == "corrupt" and sent == 0:
                chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
            if fault and fault.mode == "slow":
                time.sleep(len(chunk) / fault.bytes_per_second)
            h.wfile.write(chunk)
            sent += len(chunk)
    with h.emu.ee.lock:
        h.emu.ee.stats.bytes_downloaded += sent


@route("DELETE", _DRIVE + r"/files/(?P<id>[^/]+)", "drive.files.delete")
def _drive_delete(h: RequestHandler, m: re.Match[str]) -> None:
    h.emu.drive.delete(m["id"], caller=h.caller)
    h.send_empty(204)


@route("PATCH", _DRIVE + r"/files/(?P<id>[^/]+)", "drive.files.update")
def _drive_update(h: RequestHandler, m: re.Match[str]) -> None:
    h.send_json(200, h.emu.drive.update(m["id"], h.json_body(), caller=h.caller).resource())


@route("GET", _DRIVE + r"/about", "drive.about")
def _drive_about(h: RequestHandler, m: re.Match[str]) -> None:
    identity = h.identity
    if identity and identity.is_service_account:  # a service account's own (usually no) storage
        used, limit = h.emu.drive.used_by(identity.email), h.emu.config.service_account_drive_quota_bytes
    else:
        used, limit = h.emu.drive.used_bytes, h.emu.drive.quota_bytes
    quota: dict[str, str] = {"usage": str(used), "usageInDrive": str(used)}
    if limit is not None:
        quota["limit"] = str(limit)
    h.send_json(200, {"kind": "drive#about", "storageQuota": quota})


# ============================================================ OAuth


@route("POST", r"/token", "oauth.token")
def _token(h: RequestHandler, m: re.Match[str]) -> None:
    form = {k: v[-1] for k, v in parse_qs(h.body_bytes().decode()).items()}
    try:
        grant = form.get("grant_type")
        h.send_json(200, h.emu.auth.exchange(grant, form.get("assertion"), verify=h.emu.require_auth, form=form))
    except ValueError as exc:
        error, _, description = str(exc).partition(": ")
        h.send_json(400, {"error": error, "error_description": description or error})


register_identity_routes(route)


# ============================================================ admin


@route("GET", r"/_emulator/health", "admin.health")
def _health(h: RequestHandler, m: re.Match[str]) -> None:
    h.send_json(200, {"status": "ok", "url": h.emu.url})


@route("GET", r"/_emulator/stats", "admin.stats")
def _stats(h: RequestHandler, m: re.Match[str]) -> None:
    h.send_json(200, h.emu.stats())


@route("GET", r"/_emulator/operations", "admin.operations")
def _operation_times(h: RequestHandler, m: re.Match[str]) -> None:
    """Every operation's description, state and create/start/end times (for benchmarks: not a
    listed EE route, so reading it does not count as an EE request)."""
    with h.emu.ee.lock:
        ops = sorted(h.emu.ee.operations.values(), key=lambda op: op.seq)
        keys = ("description", "state", "createTime", "startTime", "endTime")
        h.send_json(200, {"operations": [{"name": op.name} | {k: op.metadata.get(k) for k in keys} for op in ops]})


@route("POST", r"/_emulator/reset", "admin.reset")
def _reset(h: RequestHandler, m: re.Match[str]) -> None:
    h.body_bytes()
    h.emu.reset()
    h.send_json(200, {"status": "reset"})


@route("POST", r"/_emulator/faults", "admin.faults")
def _faults_add(h: RequestHandler, m: re.Match[str]) -> None:
    body = h.json_body()
    rules = body if isinstance(body, list) else [body]
    for rule in rules:
        h.emu.faults.add(rule)
    h.send_json(200, {"faults": h.emu.faults.rules()})


@route("DELETE", r"/_emulator/faults", "admin.faults")
def _faults_clear(h: RequestHandler, m: re.Match[str]) -> None:
    h.emu.faults.clear()
    h.send_json(200, {"faults": []})


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _as_given(value: Any) -> Any:
    return value


#: the EmulatorConfig fields a running emulator may change (``POST /_emulator/config``), each with
#: how its JSON value is read; the route answers with all of them. ``error_status`` is merged into
#: the statuses already set; the Drive store's two settings are applied to the store too.
RUNTIME_CONFIG: dict[str, Callable[[Any], Any]] = {
    "ee_concurrency": int,
    "task_seconds": float,
    "drive_quota_bytes": _optional_int,
    "drive_listing_lag_seconds": float,
    "quota_projects": tuple,
    "metadata_scopes": tuple,
    "error_status": lambda value: {str(k): int(v) for k, v in value.items()},
    **dict.fromkeys(
        (
            "operation_ttl_seconds", "operations_order", "max_queued", "request_id_reuse", "strict_evaluation",
            "max_pixels_per_task", "memory_limit_pixels", "task_timeout_seconds", "feature_count",
            "registration_state", "plan_max_concurrent_exports",
        ),
        _as_given,
    ),
}  # fmt: skip


@route("POST", r"/_emulator/config", "admin.config")
def _config(h: RequestHandler, m: re.Match[str]) -> None:
    """Change settings of a running emulator (:data:`RUNTIME_CONFIG`); answer with them all."""
    body = h.json_body()
    cfg = h.emu.config
    unknown = sorted(set(body) - set(RUNTIME_CONFIG))
    if unknown:
        h.send_json(400, {"error": {"code": 400, "message": f"Not settable at run time: {', '.join(unknown)}"}})
        return
    for name, value in body.items():
        value = RUNTIME_CONFIG[name](value)
        if name == "error_status":
            value = {**cfg.error_status, **value}
        setattr(cfg, name, value)
    if "drive_quota_bytes" in body:
        h.emu.drive.quota_bytes = cfg.drive_quota_bytes
    if "drive_listing_lag_seconds" in body:
        h.emu.drive.listing_lag_seconds = cfg.drive_listing_lag_seconds
    h.emu.ee._schedule()
    answer = {name: getattr(cfg, name) for name in RUNTIME_CONFIG}
    # the store's own (a test may have set them on it directly)
    answer.update(drive_quota_bytes=h.emu.drive.quota_bytes, drive_listing_lag_seconds=h.emu.drive.listing_lag_seconds)
    h.send_json(200, answer)


@route("POST", r"/_emulator/drive/files", "admin.drive.seed")
def _drive_seed(h: RequestHandler, m: re.Match[str]) -> None:
    """Seed a Drive file: ``{"folder": name, "name": ..., "size": N, "seed": s}``, or ``"content"``
    (text) instead of size; ``"owner": "someone@example.com"`` makes it another identity's."""
    body = h.json_body()
    folder = h.emu.drive.folder_for_export(body.get("folder"))
    if "content" in body:
        tmp = h.emu.drive.blob_dir / f"seed-{time.monotonic_ns()}"
        tmp.write_bytes(str(body["content"]).encode())
        mime = body.get("mimeType", "text/plain")
        f = h.emu.drive.add_files(folder.id, [(str(body["name"]), tmp, mime)], owner=body.get("owner"))[0]
    else:
        size, seed = int(body["size"]), int(body.get("seed", 0))
        f = h.emu.drive.seed_file(folder.id, str(body["name"]), size, seed, owner=body.get("owner"))
    h.send_json(200, f.resource())


@route("POST", r"/_emulator/assets", "admin.assets.seed")
def _assets_seed(h: RequestHandler, m: re.Match[str]) -> None:
    """Seed a folder or a table: ``{"name": "projects/p/assets/x", "type": "TABLE", "features": [...]}``."""
    body = h.json_body()
    name = str(body["name"])
    project, _, relative = name.removeprefix("projects/").partition("/assets/")
    h.send_json(200, h.emu.ee.create_asset(project, relative, body, bool(body.get("overwrite"))))


@route("POST", r"/_emulator/keys", "admin.keys")
def _trust_key(h: RequestHandler, m: re.Match[str]) -> None:
    h.emu.auth.trust(h.json_body())
    h.send_json(200, {"status": "trusted"})


@route("GET", r"/_emulator/connection", "admin.connection")
def _connection(h: RequestHandler, m: re.Match[str]) -> None:
    h.send_json(200, h.emu.connection())
