"""Earth Engine batch operations as the operators see them: export kinds, destinations, states and
the small summary kept of an operation.

Standard library only: the operator modules import this when a DAG file is parsed, which every
task process does again, while the hooks (Google provider, googleapiclient, aiohttp) are imported
only by the tasks that talk to Google.
"""

from __future__ import annotations

import json
import re
from typing import Any

EXPORT_KINDS: tuple[str, ...] = ("image", "table")
DESTINATIONS: tuple[str, ...] = ("drive", "asset", "gcs")

#: Operation states in which EE still holds a batch slot or queue entry for the task.
ACTIVE_STATES = frozenset({"PENDING", "RUNNING", "CANCELLING"})
TERMINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
#: EE cancels a batch task that has run for 10 days; waiting longer than that (plus an hour of
#: slack for queueing) means the answer was lost, not that the task is still going.
EE_TASK_MAX_SECONDS = 10 * 24 * 3600
DEFAULT_WAIT_TIMEOUT = float(EE_TASK_MAX_SECONDS + 3600)
#: Listing pages (500 operations each) read at most per listing: EE lists the caller's recent tasks
#: in no documented order, so a listing is read whole up to this bound (EE queues at most 3,000).
LIST_MAX_PAGES = 10


#: The extensions EE gives an export's files, by its file format as the REST API names it
#: (``ee/_cloud_api_utils.py`` ``convert_to_image_file_format``/``convert_to_table_file_format``
#: map the client's ``GeoTIFF``, ``GeoJSON``, ``TFRecord`` onto these). TFRecord and shapefile
#: exports write several files; their exact names are not documented (docs/emulator.md).
EXPORT_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "GEO_TIFF": ("tif",),
    "TF_RECORD_IMAGE": ("tfrecord", "tfrecord.gz", "json"),
    "CSV": ("csv",),
    "GEO_JSON": ("geojson",),
    "KML": ("kml",),
    "KMZ": ("kmz",),
    "SHP": ("shp", "shx", "dbf", "prj", "cpg", "zip"),
    "TF_RECORD_TABLE": ("tfrecord", "tfrecord.gz"),
}
ALL_EXTENSIONS: tuple[str, ...] = tuple(sorted({e for exts in EXPORT_EXTENSIONS.values() for e in exts}))


def rest_file_format(file_format: str | None, export_type: str | None) -> str:
    """``file_format`` as the REST API names it (``GeoTIFF`` -> ``GEO_TIFF``, ``TFRecord`` ->
    ``TF_RECORD_IMAGE``/``TF_RECORD_TABLE``; ``None``: EE's default, GeoTIFF for images, CSV for
    tables)."""
    fmt = (file_format or {"image": "GeoTIFF", "table": "CSV"}.get(export_type or "", "")).upper()
    fmt = {"GEOTIFF": "GEO_TIFF", "GEOJSON": "GEO_JSON"}.get(fmt, fmt)
    if fmt == "TFRECORD":
        fmt = {"image": "TF_RECORD_IMAGE", "table": "TF_RECORD_TABLE"}.get(export_type or "", "")
    return fmt


def export_extensions(file_format: str | None, export_type: str | None) -> tuple[str, ...]:
    """The extensions of the files EE writes for an export of ``export_type`` (``image`` or
    ``table``) in ``file_format`` (see :func:`rest_file_format`). Unknown: every extension EE writes."""
    return EXPORT_EXTENSIONS.get(rest_file_format(file_format, export_type), ALL_EXTENSIONS)


def export_file_pattern(prefix: str, extensions: tuple[str, ...] = ALL_EXTENSIONS) -> re.Pattern[str]:
    """The names EE gives the files of an export with ``fileNamePrefix=prefix``, and no others.

    EE writes ``prefix.ext`` or, for a GeoTIFF split into parts,
    ``prefix-RRRRRRRRRR-CCCCCCCCCC.ext`` (pixel row and column offsets, ten digits each; see
    docs/emulator.md for the sources), with the extensions of its file format
    (:func:`export_extensions`). A name that merely starts with the prefix (``t10.tif`` for prefix
    ``t1``, ``ndvi.2020.tif`` for prefix ``ndvi``) belongs to another export.
    """
    ext = "|".join(re.escape(e) for e in sorted(extensions, key=len, reverse=True))
    return re.compile(rf"{re.escape(prefix)}(?:-\d{{10}}-\d{{10}})?\.(?:{ext})")


def count_active(operations: list[dict[str, Any]]) -> int:
    """How many of these operations still hold a place in EE's queue (PENDING/RUNNING/CANCELLING)."""
    return sum(1 for op in operations if op.get("metadata", {}).get("state") in ACTIVE_STATES)


def summarize(operation: dict[str, Any]) -> dict[str, Any]:
    """The fields of an operation that operators and the log need (small, JSON-ready)."""
    meta = operation.get("metadata", {})
    out = {
        "name": operation.get("name"),
        "state": meta.get("state"),
        "description": meta.get("description"),
        "type": meta.get("type"),
        "progress": meta.get("progress"),
        "destination_uris": meta.get("destinationUris", []),
        "eecu_seconds": meta.get("batchEecuUsageSeconds"),
        "attempt": meta.get("attempt"),
        "create_time": meta.get("createTime"),
        "update_time": meta.get("updateTime"),
    }
    if operation.get("error"):
        out["error"] = operation["error"].get("message")
    return out


def export_result(base: dict[str, Any], op: dict[str, Any]) -> dict[str, Any]:
    """An export's XCom result: what the operator knows (``base``: tile, kind, destination, prefix
    or asset) completed with what EE says of its operation (``op``, a :func:`summarize` summary).

    The one place the result is assembled: the operator uses it, and so does the trigger when a
    successful export ends in the triggerer without resuming on a worker (``end_from_trigger``).
    """
    from airflow_provider_gee.links.drive import drive_folder_id

    result = {
        **base,
        "operation": op["name"],
        "state": op["state"],
        "description": op.get("description") or base.get("description"),
        "destination_uris": op.get("destination_uris", []),
        "eecu_seconds": op.get("eecu_seconds"),
        "create_time": op.get("create_time"),  # files older than this are not the export's
    }
    if result.get("destination") == "drive":
        result["drive_folder_id"] = drive_folder_id(result["destination_uris"])
    return result


def export_parts(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The exports an export result is made of: the parts of a tile EE refused for its size (each
    a result of its own: prefix or asset, EE task, files' URIs), else the result itself."""
    return list(result.get("parts") or [result])


def as_export_result(value: Any) -> Any:
    """An export's result as a dict, also when Airflow hands it over as JSON text.

    A task that ended in the triggerer (``end_from_trigger``) has its return value written by the
    triggerer, and Airflow 3.1-3.3 store such XComs JSON-encoded (``XComModel.set`` dumps the value
    the task SDK then reads back as a string). Every operator that takes export results reads them
    through this function, so either kind works.
    """
    if isinstance(value, str) and value.startswith("{"):
        return json.loads(value)
    return value
