"""The emulator's own routes (``/_emulator/...``): health, stats, reset, faults, run-time settings,
seeding Drive files and assets, keys and the connection. All but health need the admin token when
the emulator ``require_auth``."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gee_emulator.routing import route

if TYPE_CHECKING:
    from gee_emulator.server import RequestHandler


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
