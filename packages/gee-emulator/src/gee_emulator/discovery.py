"""The Earth Engine v1 discovery document the emulator serves.

The ``ee`` client builds its API from this document (``googleapiclient.discovery``), so it must
declare every method and keyword the client uses, response schemas (a method without one returns
raw bytes), and ``pageToken``/``nextPageToken`` where the client pages with ``list_next``.
"""

from __future__ import annotations

from typing import Any

_STR = {"type": "string", "location": "query"}
_INT = {"type": "integer", "format": "int32", "location": "query"}
_BOOL = {"type": "boolean", "location": "query"}


def _path(name: str, pattern: str) -> dict[str, Any]:
    return {name: {"type": "string", "location": "path", "required": True, "pattern": pattern}}


_PROJECT = "^projects/[^/]+$"
_ASSET = "^projects/[^/]+/assets/.*$"
_OPERATION = "^projects/[^/]+/operations/.*$"
_PAGING = {"pageSize": _INT, "pageToken": _STR}

# (resource path, method, HTTP verb, path template, parameters, request schema, response schema)
_METHODS: list[tuple[str, str, str, str, dict[str, Any], str | None, str]] = [
    (
        "projects",
        "listAssets",
        "GET",
        "v1/{+parent}:listAssets",
        {**_path("parent", _PROJECT), **_PAGING, "view": _STR, "filter": _STR},
        None,
        "ListAssetsResponse",
    ),
    (
        "projects",
        "getConfig",
        "GET",
        "v1/{+name}",
        _path("name", "^projects/[^/]+/config$"),
        None,
        "ProjectConfig",
    ),
    (
        "projects.algorithms",
        "list",
        "GET",
        "v1/{+parent}/algorithms",
        _path("parent", _PROJECT),
        None,
        "ListAlgorithmsResponse",
    ),
    (
        "projects.assets",
        "create",
        "POST",
        "v1/{+parent}/assets",
        {**_path("parent", _PROJECT), "assetId": _STR, "overwrite": _BOOL},
        "EarthEngineAsset",
        "EarthEngineAsset",
    ),
    ("projects.assets", "get", "GET", "v1/{+name}", _path("name", _ASSET), None, "EarthEngineAsset"),
    ("projects.assets", "delete", "DELETE", "v1/{+name}", _path("name", _ASSET), None, "Empty"),
    (
        "projects.assets",
        "patch",
        "PATCH",
        "v1/{+name}",
        _path("name", _ASSET),
        "UpdateAssetRequest",
        "EarthEngineAsset",
    ),
    (
        "projects.assets",
        "copy",
        "POST",
        "v1/{+sourceName}:copy",
        _path("sourceName", _ASSET),
        "CopyAssetRequest",
        "EarthEngineAsset",
    ),
    (
        "projects.assets",
        "move",
        "POST",
        "v1/{+sourceName}:move",
        _path("sourceName", _ASSET),
        "MoveAssetRequest",
        "EarthEngineAsset",
    ),
    (
        "projects.assets",
        "listAssets",
        "GET",
        "v1/{+parent}:listAssets",
        {**_path("parent", _ASSET), **_PAGING, "view": _STR, "filter": _STR},
        None,
        "ListAssetsResponse",
    ),
    (
        "projects.assets",
        "listFeatures",
        "GET",
        "v1/{+asset}:listFeatures",
        {**_path("asset", _ASSET), **_PAGING, "region": _STR, "filter": _STR},
        None,
        "ListFeaturesResponse",
    ),
    (
        "projects.image",
        "export",
        "POST",
        "v1/{+project}/image:export",
        _path("project", _PROJECT),
        "ExportImageRequest",
        "Operation",
    ),
    (
        "projects.table",
        "export",
        "POST",
        "v1/{+project}/table:export",
        _path("project", _PROJECT),
        "ExportTableRequest",
        "Operation",
    ),
    (
        "projects.value",
        "compute",
        "POST",
        "v1/{+project}/value:compute",
        _path("project", _PROJECT),
        "ComputeValueRequest",
        "ComputeValueResponse",
    ),
    (
        "projects.operations",
        "list",
        "GET",
        "v1/{+name}/operations",
        {**_path("name", _PROJECT), **_PAGING, "filter": _STR},
        None,
        "ListOperationsResponse",
    ),
    ("projects.operations", "get", "GET", "v1/{+name}", _path("name", _OPERATION), None, "Operation"),
    (
        "projects.operations",
        "cancel",
        "POST",
        "v1/{+name}:cancel",
        _path("name", _OPERATION),
        "CancelOperationRequest",
        "Empty",
    ),
    ("projects.operations", "delete", "DELETE", "v1/{+name}", _path("name", _OPERATION), None, "Empty"),
]

_OBJECT_SCHEMAS = [
    "Operation",
    "EarthEngineAsset",
    "ProjectConfig",
    "Empty",
    "CopyAssetRequest",
    "MoveAssetRequest",
    "UpdateAssetRequest",
    "ExportImageRequest",
    "ExportTableRequest",
    "ComputeValueRequest",
    "ComputeValueResponse",
    "CancelOperationRequest",
    "EarthEngineAlgorithm",
    "Feature",
]


def _list_schema(name: str, field: str, item: str) -> dict[str, Any]:
    return {
        "id": name,
        "type": "object",
        "properties": {
            field: {"type": "array", "items": {"$ref": item}},
            "nextPageToken": {"type": "string"},
        },
    }


def discovery_document(root_url: str) -> dict[str, Any]:
    """The discovery document with every method rooted at ``root_url`` (``http://host:port/``)."""
    resources: dict[str, Any] = {}
    for resource_path, method, verb, path, params, request, response in _METHODS:
        node: dict[str, Any] = {"resources": resources}
        for part in resource_path.split("."):
            node = node["resources"].setdefault(part, {"methods": {}, "resources": {}})
        desc: dict[str, Any] = {
            "id": f"earthengine.{resource_path}.{method}",
            "httpMethod": verb,
            "path": path,
            "flatPath": path,
            "parameters": params,
            "parameterOrder": [k for k, v in params.items() if v.get("required")],
            "response": {"$ref": response},
        }
        if request:
            desc["request"] = {"$ref": request}
        node["methods"][method] = desc
    schemas: dict[str, Any] = {n: {"id": n, "type": "object", "properties": {}} for n in _OBJECT_SCHEMAS}
    schemas["ListAssetsResponse"] = _list_schema("ListAssetsResponse", "assets", "EarthEngineAsset")
    schemas["ListOperationsResponse"] = _list_schema("ListOperationsResponse", "operations", "Operation")
    schemas["ListFeaturesResponse"] = _list_schema("ListFeaturesResponse", "features", "Feature")
    schemas["ListAlgorithmsResponse"] = _list_schema("ListAlgorithmsResponse", "algorithms", "EarthEngineAlgorithm")
    global_params: dict[str, dict[str, Any]] = {
        name: {"type": "string", "location": "query"}
        for name in (
            "access_token",
            "callback",
            "fields",
            "key",
            "oauth_token",
            "quotaUser",
            "uploadType",
            "upload_protocol",
            "$.xgafv",
        )
    }
    global_params["prettyPrint"] = {"type": "boolean", "location": "query", "default": "true"}
    global_params["alt"] = {
        "type": "string",
        "location": "query",
        "default": "json",
        "enum": ["json", "media", "proto"],
    }
    return {
        "kind": "discovery#restDescription",
        "discoveryVersion": "v1",
        "id": "earthengine:v1",
        "name": "earthengine",
        "version": "v1",
        "title": "Google Earth Engine API (local emulator)",
        "protocol": "rest",
        "rootUrl": root_url,
        "baseUrl": root_url,
        "servicePath": "",
        "basePath": "",
        "batchPath": "batch",
        "parameters": global_params,
        "schemas": schemas,
        "resources": resources,
    }
