"""Earth Engine REST v1: algorithms, value:compute, exports, operations, assets and the project's
config (the REST reference's paths and bodies; docs/emulator.md names the sources)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from gee_emulator.algorithms import algorithms_json
from gee_emulator.discovery import discovery_document
from gee_emulator.ee_state import ApiError
from gee_emulator.routing import route, send_page

if TYPE_CHECKING:
    from gee_emulator.server import RequestHandler

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
    send_page(h, ops, "operations", 500, 500)


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
    send_page(h, h.emu.ee.children(parent), "assets", 1000, 10000)


@route("GET", _P + r"/assets/(?P<path>.+):listFeatures", "ee.assets.listFeatures")
def _assets_list_features(h: RequestHandler, m: re.Match[str]) -> None:
    features = h.emu.ee.table_features(f"projects/{m['project']}/assets/{m['path']}")
    send_page(h, features, "features", 1000, 10000, type="FeatureCollection")


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
