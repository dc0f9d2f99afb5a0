"""The emulator's HTTP server: one loopback port for every service, whose routes live in a module
each (``ee_routes``: EE REST v1; ``drive_routes``: Drive v3; ``identity_routes``: OAuth, tokeninfo,
the metadata server, STS and IAM; ``admin_routes``: the emulator's own), in the table of
:mod:`gee_emulator.routing`. The handler here authenticates, injects faults and dispatches.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
import secrets
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from gee_emulator.auth import (
    DEFAULT_USER_SCOPES,
    DRIVE_SCOPE,
    GCLOUD_SCOPES,
    Identity,
    TokenAuthority,
    generate_service_account_key,
)
from gee_emulator.drive_store import FOLDER_MIME, DriveError, DriveStore
from gee_emulator.ee_state import ApiError, EarthEngineState, EmulatorConfig
from gee_emulator.faults import FaultInjector
from gee_emulator.routing import (
    NOT_REGISTERED,
    QUOTA_PROJECT_REQUIRED,
    ROUTES,
    USER_PROJECT_DENIED,
    error_body,
    scope_error,
    status_name,
)


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
            ((name, fn, match) for m, pattern, name, fn in ROUTES if m == method and (match := pattern.match(path))),
            None,
        )
        if found is None:
            self._discard_body()
            self.send_json(404, error_body(404, f"No route for {method} {split.path}.", "NOT_FOUND"))
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
                self.send_json(401, error_body(401, message, "UNAUTHENTICATED"))
                return
        needs_token = self.emu.require_auth and not name.startswith(("admin.", "oauth.", "metadata.", "sts."))
        if needs_token and not self.emu.auth.valid(self.headers.get("Authorization")):
            self._discard_body()
            message = "Request had invalid authentication credentials."
            self.send_json(401, error_body(401, message, "UNAUTHENTICATED"))
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
            self.send_json(403, error_body(403, QUOTA_PROJECT_REQUIRED, "PERMISSION_DENIED"))
            return
        denied = self._project_problem(name, match)
        if denied:
            self._discard_body()
            self.send_json(403, denied)
            return
        if name.startswith("drive.") and identity and not identity.has_scope_prefix(DRIVE_SCOPE):
            # Google: a token without a Drive scope is refused by Drive whatever the identity
            self._discard_body()
            self.send_json(403, scope_error())
            return
        fault = None if name.startswith("admin.") else self.emu.faults.take("http", name)
        if fault and fault.delay:  # a slow answer, not an error
            time.sleep(fault.delay)
            fault = None
        if fault and not fault.after:
            self._discard_body()
            self.send_json(fault.status, error_body(fault.status, fault.message, status_name(fault.status)))
            return
        try:
            if fault:  # handled, then the answer is "lost"
                self._suppress = True
                fn(self, match)
                self._suppress = False
                self.send_json(fault.status, error_body(fault.status, fault.message, status_name(fault.status)))
            else:
                fn(self, match)
        except ApiError as exc:
            self._suppress = False
            self.send_json(exc.status_code, error_body(exc.status_code, exc.message, exc.status))
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
            self.send_json(400, error_body(400, f"Invalid request: {exc}", "INVALID_ARGUMENT"))

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
            body = error_body(403, USER_PROJECT_DENIED.format(project=quota), "PERMISSION_DENIED")
            body["error"]["details"] = [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "USER_PROJECT_DENIED",
                 "domain": "googleapis.com", "metadata": {"consumer": f"projects/{quota}"}}
            ]  # fmt: skip
            return body
        if project == cfg.project and cfg.registration_state == "NOT_REGISTERED" and name != "ee.projects.getConfig":
            return error_body(403, NOT_REGISTERED.format(project=project), "PERMISSION_DENIED")
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


# every service's routes register on import, in this order (the first match answers)
from gee_emulator import admin_routes, drive_routes, ee_routes, identity_routes  # noqa: E402, F401
