"""Earth Engine's side of the emulator: operations (batch tasks) run in real time under the
concurrency rule, and assets (folders, tables, images).

A submitted export is PENDING until one of ``ee_concurrency`` slots is free, then RUNNING for
``task_seconds`` (progress rising from 0 to 1), then SUCCEEDED with real outputs, or FAILED with
EE's message. ``requestId`` de-duplicates submissions as EE does.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import secrets
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shapely.geometry import shape

from gee_emulator import outputs
from gee_emulator.algorithms import check_calls, function_names
from gee_emulator.catalogue import Catalogue, counting_reads
from gee_emulator.drive_store import DriveError, DriveStore
from gee_emulator.evaluator import (
    EvaluationError,
    Evaluator,
    Feature,
    FeatureCollection,
    Geometry,
    Image,
    evaluated_exactly,
    unsupported_message,
)
from gee_emulator.faults import FaultInjector

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9-]{1,60}$")
ACTIVE = ("PENDING", "RUNNING", "CANCELLING")
#: EE's operation states (the REST reference's ``OperationMetadata.State``) and every move the
#: emulator makes between them: a queued task starts or is cancelled; a running one ends, or is asked
#: to cancel, or is cancelled outright when the emulator stops; a cancelling one ends either way.
#: Ended tasks never move. (A restart queues unfinished tasks again as new attempts: that is a task
#: restored, not moved, see :meth:`EarthEngineState.restore`.)
TRANSITIONS: dict[str, frozenset[str]] = {
    "PENDING": frozenset({"RUNNING", "CANCELLED"}),
    "RUNNING": frozenset({"SUCCEEDED", "FAILED", "CANCELLING", "CANCELLED"}),
    "CANCELLING": frozenset({"CANCELLED", "SUCCEEDED", "FAILED"}),
    "SUCCEEDED": frozenset(),
    "FAILED": frozenset(),
    "CANCELLED": frozenset(),
}


def move(op: Operation, state: str, **metadata: Any) -> None:
    """Move ``op`` to ``state`` (with ``updateTime`` and ``metadata``), as :data:`TRANSITIONS`
    allows; any other move is an emulator bug and raises."""
    if state not in TRANSITIONS[op.state]:
        raise RuntimeError(f"emulator bug: operation {op.id} cannot go from {op.state} to {state}")
    op.metadata.update(state=state, updateTime=_now(), **metadata)


_EXPORT_TYPES = {"image": "EXPORT_IMAGE", "table": "EXPORT_FEATURES"}
_CODES = {"INVALID_ARGUMENT": 3, "NOT_FOUND": 5, "ALREADY_EXISTS": 6, "CANCELLED": 1, "INTERNAL": 13}


class ApiError(Exception):
    """An error answered in Google's JSON error format."""

    def __init__(self, status_code: int, message: str, status: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.status = status


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def asset_id_of(name: str) -> str:
    """The ``id`` EE gives an asset: the path for public-catalogue and legacy assets
    (``USGS/SRTMGL1_003``, ``users/me/x``), the full name for a Cloud project's assets (as
    ``ee.data.getAssetRoots`` documents and the Code Editor shows)."""
    project, path = name.split("/", 1)[1].split("/assets/", 1)
    return path if project in ("earthengine-public", "earthengine-legacy") else name


def _table_counts(features: list[dict[str, Any]]) -> dict[str, str]:
    """``featureCount``/``sizeBytes`` as EE gives them: int64 as strings, omitted when 0 (proto3 JSON)."""
    counts = {"featureCount": len(features), "sizeBytes": len(repr(features)) if features else 0}
    return {k: str(v) for k, v in counts.items() if v}


def _end_seconds(op: Operation) -> float:
    return dt.datetime.fromisoformat(op.metadata["endTime"].replace("Z", "+00:00")).timestamp()


@dataclass
class Operation:
    id: str
    project: str
    kind: str  # image | table
    body: dict[str, Any]
    metadata: dict[str, Any]
    done: bool = False
    error: dict[str, Any] | None = None
    cancel_requested: bool = False
    seq: int = 0
    caller: str | None = None  # the identity that submitted it: EE writes its Drive files as the caller

    @property
    def name(self) -> str:
        return f"projects/{self.project}/operations/{self.id}"

    @property
    def state(self) -> str:
        return self.metadata["state"]

    def resource(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "metadata": dict(self.metadata)}
        if self.done:
            out["done"] = True
            if self.error:
                out["error"] = self.error
            else:
                out["response"] = {"@type": "type.googleapis.com/google.protobuf.Empty"}
        return out


@dataclass
class EmulatorConfig:
    project: str = "gee-emulator"
    ee_concurrency: int = 2
    task_seconds: float = 1.0
    drive_quota_bytes: int | None = None
    drive_listing_lag_seconds: float = 0.0
    #: Drive storage of a service account: none since 2025, as on Google; a number models an
    #: older account that still has some, ``None`` no limit
    service_account_drive_quota_bytes: int | None = 0
    file_dimensions: int = 4096
    gcs_url: str | None = None
    #: EE lists recent tasks only: a finished operation is forgotten (listing, GET, its requestId)
    #: this many seconds after it ended; ``None`` keeps them (EE keeps a task at most 10 days)
    operation_ttl_seconds: float | None = None
    #: the order of ``operations.list``, which EE does not document: newest, oldest or random
    operations_order: str = "newest"
    #: EE refuses submissions while this many tasks of the project are queued (EE: 3,000)
    max_queued: int | None = None
    #: what a repeated requestId with a different body gets: "reject" (an error, as the REST
    #: reference allows) or "return" (the first operation, as for an identical repeat)
    request_id_reuse: str = "reject"
    #: HTTP status of answers whose status Google does not document (see ERROR_STATUS_DEFAULTS)
    error_status: dict[str, int] = field(default_factory=dict)
    #: refuse algorithms the emulator does not evaluate exactly, instead of synthesizing a result
    strict_evaluation: bool = False
    #: EE's size limits, whose numbers Google does not publish (``None``: no limit). An image
    #: export fails with EE's own message when its output has more pixels than
    #: ``max_pixels_per_task``, when pixels x bands x images read exceed ``memory_limit_pixels``,
    #: or when its compute (``batchEecuUsageSeconds``) exceeds ``task_timeout_seconds``
    max_pixels_per_task: int | None = None
    memory_limit_pixels: int | None = None
    task_timeout_seconds: float | None = None
    #: a table asset's ``featureCount``: "when_nonzero" (written unless 0, as proto3 JSON does) or
    #: "never" (EE need not have counted a table yet; when it has, the REST reference does not say)
    feature_count: str = "when_nonzero"
    #: the project's Earth Engine registration (``projects.getConfig``: ``NOT_REGISTERED``,
    #: ``REGISTERED_COMMERCIALLY``, ``REGISTERED_NOT_COMMERCIALLY``); an unregistered project's
    #: calls are refused with EE's message
    registration_state: str = "REGISTERED_NOT_COMMERCIALLY"
    #: ``planMaxConcurrentExports`` (``None``: the same as ``ee_concurrency``, EE's
    #: ``maxConcurrentExports``)
    plan_max_concurrent_exports: int | None = None
    #: projects other than ``project`` a caller may name as quota project (``X-Goog-User-Project``);
    #: any other is refused with Google's USER_PROJECT_DENIED
    quota_projects: tuple[str, ...] = ()
    #: the scopes of the metadata server's token (a VM's default: Cloud Platform only, no Drive)
    metadata_scopes: tuple[str, ...] = ("https://www.googleapis.com/auth/cloud-platform",)


#: the fields of ExportImageRequest and ExportTableRequest (EE REST reference, v1; ``maxWorkers``
#: as ``ee/batch.py`` sends it): Google answers any other with "Invalid JSON payload received"
EXPORT_FIELDS = {
    "image": frozenset({"expression", "description", "maxPixels", "grid", "requestId", "workloadTag", "priority",
                        "fileExportOptions", "assetExportOptions", "maxWorkers"}),
    "table": frozenset({"expression", "description", "selectors", "requestId", "maxErrorMeters", "maxWorkers",
                        "maxVertices", "workloadTag", "priority", "policy", "fileExportOptions",
                        "assetExportOptions", "featureViewExportOptions", "bigqueryExportOptions"}),
}  # fmt: skip
#: ``ee.data.setWorkloadTag``: 1-63 characters, alphanumeric at both ends, ``-_.`` and alphanumerics between
WORKLOAD_TAG_RE = re.compile(r"[a-zA-Z0-9](?:[-_.a-zA-Z0-9]{0,61}[a-zA-Z0-9])?")
#: image file formats the emulator writes; EE's TFRecord image exports (several files and a JSON
#: sidecar whose names Google does not document) are refused rather than written as GeoTIFF
IMAGE_FILE_FORMATS = ("GEO_TIFF",)


def _wrapped_int(value: Any, field_name: str) -> int:
    """An Int32Value/Int64Value field in either JSON form: plain (the REST reference's
    ``"priority": 150``) or the wrapper ``ee/batch.py`` sends (``{"value": 150}``)."""
    raw: Any = value.get("value") if isinstance(value, dict) else value
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise ApiError(400, f"Invalid value at '{field_name}' (TYPE_INT32), \"{raw}\"", "INVALID_ARGUMENT") from None


#: EECU-seconds per pixel x band x image read: the emulator's cost model (docs/emulator.md)
EECU_SECONDS_PER_PIXEL_READ = 1e-6


OPERATIONS_ORDERS = ("newest", "oldest", "random")
REQUEST_ID_REUSE = ("reject", "return")
#: answers whose HTTP status Google does not document, and the status the emulator gives by default
#: (``--error-status NAME=CODE`` switches one; the provider is tested under each variant)
ERROR_STATUS_DEFAULTS: dict[str, int] = {
    "queue_full": 429,  # "Too many tasks already in the queue (3000)..."
    "request_id_reused": 400,  # a requestId repeated with a different body
    "asset_exists": 409,  # creating an asset (a folder) that exists
    "cancel_done": 200,  # cancelling an operation that has ended (200: accepted, nothing happens)
}
#: EE's message when the project's queue is full
QUEUE_FULL = "Too many tasks already in the queue ({limit}). Please wait for some of them to complete."
_STATUS_NAMES = {400: "INVALID_ARGUMENT", 409: "ALREADY_EXISTS", 429: "RESOURCE_EXHAUSTED", 412: "FAILED_PRECONDITION"}

#: Drive's answer when a service account would store a file (the text Google returns since 2025)
SERVICE_ACCOUNT_NO_STORAGE = (
    "Service Accounts do not have storage quota. Leverage shared drives "
    "(https://developers.google.com/workspace/drive/api/guides/about-shareddrives), or use OAuth delegation "
    "(http://support.google.com/a/answer/7281227) instead."
)


@dataclass
class Stats:
    requests: Counter = field(default_factory=Counter)
    peak_in_flight: int = 0
    export_requests: int = 0
    bytes_downloaded: int = 0


class EarthEngineState:
    """Operations and assets of one emulated project (several projects share the store)."""

    def __init__(self, config: EmulatorConfig, drive: DriveStore, faults: FaultInjector, work_dir: Path) -> None:
        self.config = config
        self.drive = drive
        self.faults = faults
        self.catalogue = Catalogue()
        self.work_dir = work_dir
        self.lock = threading.RLock()
        self.operations: dict[str, Operation] = {}
        self.request_ids: dict[tuple[str, str, str], str] = {}  # (project, caller, requestId) -> id
        self.assets: dict[str, dict[str, Any]] = {}
        self.stats = Stats()
        self._seq = 0
        self._on_change: Callable[[], None] = lambda: None

    def status(self, key: str) -> int:
        """The HTTP status of an answer whose status Google does not document."""
        return int(self.config.error_status.get(key, ERROR_STATUS_DEFAULTS[key]))

    def _error(self, key: str, message: str) -> ApiError:
        code = self.status(key)
        return ApiError(code, message, _STATUS_NAMES.get(code, "FAILED_PRECONDITION"))

    def _forget_expired(self) -> None:
        """Drop finished operations older than the TTL, and their requestIds (call with the lock)."""
        ttl = self.config.operation_ttl_seconds
        if ttl is None:
            return
        cutoff = time.time() - ttl
        gone = {i for i, op in self.operations.items() if op.done and _end_seconds(op) < cutoff}
        if gone:
            for op_id in gone:
                del self.operations[op_id]
            self.request_ids = {k: v for k, v in self.request_ids.items() if v not in gone}

    def reset(self) -> None:
        with self.lock:
            for op in self.operations.values():
                op.cancel_requested = True
            self.operations.clear()
            self.request_ids.clear()
            self.assets.clear()
            self.stats = Stats()

    # ---------------------------------------------------------------- operations

    def usage_by_workload_tag(self) -> dict[str, float]:
        """EECU-seconds of succeeded exports by ``workloadTag`` ("" untagged), as Cloud
        Monitoring's "Used EECU-seconds" reports them by its ``workload_tag`` label."""
        usage: dict[str, float] = {}
        with self.lock:
            for op in self.operations.values():
                if op.state == "SUCCEEDED":
                    tag = str(op.body.get("workloadTag") or "")
                    usage[tag] = usage.get(tag, 0.0) + float(op.metadata.get("batchEecuUsageSeconds", 0))
        return {tag: round(seconds, 6) for tag, seconds in sorted(usage.items())}

    @property
    def in_flight(self) -> int:
        return sum(1 for op in self.operations.values() if op.state in ACTIVE)

    def _check_body(self, kind: str, body: dict[str, Any]) -> int:
        """Google's checks of an export body; returns its priority (default 100)."""
        unknown = sorted(set(body) - EXPORT_FIELDS[kind])
        if unknown:
            raise ApiError(
                400,
                f'Invalid JSON payload received. Unknown name "{unknown[0]}": Cannot find field.',
                "INVALID_ARGUMENT",
            )
        tag = body.get("workloadTag")
        if tag not in (None, "") and not WORKLOAD_TAG_RE.fullmatch(str(tag)):
            raise ApiError(
                400,
                f"Invalid workload tag '{tag}': it must be 1-63 characters, beginning and ending with an alphanumeric "
                "character, with dashes, underscores, dots and alphanumerics between.",
                "INVALID_ARGUMENT",
            )
        file_format = str((body.get("fileExportOptions") or {}).get("fileFormat") or "GEO_TIFF")
        if kind == "image" and file_format not in IMAGE_FILE_FORMATS:
            raise ApiError(
                400,
                f"The emulator does not model image exports as {file_format}: it writes GEO_TIFF only.",
                "INVALID_ARGUMENT",
            )
        priority = 100 if body.get("priority") is None else _wrapped_int(body["priority"], "priority")
        if not 0 <= priority <= 9999:
            raise ApiError(400, "Priority must be an integer between 0 and 9999.", "INVALID_ARGUMENT")
        return priority

    def submit_export(self, project: str, kind: str, body: dict[str, Any], caller: str | None = None) -> dict[str, Any]:
        priority = self._check_body(kind, body)
        request_id = body.get("requestId")
        if request_id is not None and not REQUEST_ID_RE.match(str(request_id)):
            raise ApiError(
                400,
                "requestId may contain the characters a..z, A..Z, 0-9, or '-' and be at most 60 characters long.",
                "INVALID_ARGUMENT",
            )
        expression = body.get("expression")
        if not isinstance(expression, dict) or "result" not in expression:
            raise ApiError(400, "Invalid JSON payload: 'expression' is required.", "INVALID_ARGUMENT")
        self._check_expression(expression)
        description = str(body.get("description") or "myExportTask")
        if len(description) > 100:
            raise ApiError(400, "Task description must be at most 100 characters.", "INVALID_ARGUMENT")
        self._check_destination(project, kind, body)
        with self.lock:
            self.stats.export_requests += 1
            self._forget_expired()
            # the REST reference: "If multiple requests with the same non-empty requestId are made by
            # the same user, only one may succeed": ids are the caller's, not the project's
            key = (project, caller or "", str(request_id))
            if request_id and key in self.request_ids:
                first = self.operations[self.request_ids[key]]
                if first.body != body and self.config.request_id_reuse == "reject":
                    # the REST reference: only one request with a given requestId may start an
                    # operation; a repeat that is not identical may be rejected
                    raise self._error(
                        "request_id_reused",
                        f"Request ID '{request_id}' was already used by another request with different content.",
                    )
                return first.resource()
            limit = self.config.max_queued
            if (
                limit is not None
                and sum(1 for op in self.operations.values() if op.project == project and op.state == "PENDING")
                >= limit
            ):
                raise self._error("queue_full", QUEUE_FULL.format(limit=limit))
            self._seq += 1
            op_id = "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(24))
            now = _now()
            op = Operation(
                id=op_id,
                project=project,
                kind=kind,
                body=body,
                seq=self._seq,
                caller=caller,
                metadata={
                    "@type": "type.googleapis.com/google.earthengine.v1.OperationMetadata",
                    "state": "PENDING",
                    "description": description,
                    "type": _EXPORT_TYPES[kind],
                    "priority": priority,
                    "createTime": now,
                    "updateTime": now,
                    "attempt": 1,
                },
            )
            self.operations[op_id] = op
            if request_id:
                self.request_ids[key] = op_id
            self._schedule()
            self._on_change()
            return op.resource()

    def _check_destination(self, project: str, kind: str, body: dict[str, Any]) -> None:
        dest = (body.get("assetExportOptions") or {}).get("earthEngineDestination")
        if dest is not None:
            name = dest.get("name", "")
            parent = name.rsplit("/", 1)[0]
            if not name.startswith("projects/") or "/assets/" not in name:
                raise ApiError(400, f"Invalid asset name '{name}'.", "INVALID_ARGUMENT")
            with self.lock:
                self._require_folder(parent)
                if name in self.assets and not dest.get("overwrite"):
                    raise ApiError(400, f"Cannot overwrite asset '{name}'.", "ALREADY_EXISTS")
        elif not body.get("fileExportOptions"):
            raise ApiError(400, "An export destination is required.", "INVALID_ARGUMENT")

    def _schedule(self) -> None:
        """Start PENDING operations (oldest first, by priority) while slots are free."""
        with self.lock:
            running = sum(1 for op in self.operations.values() if op.state in ("RUNNING", "CANCELLING"))
            pending = sorted(
                (op for op in self.operations.values() if op.state == "PENDING"),
                key=lambda op: (-op.metadata["priority"], op.seq),
            )
            for op in pending[: max(0, self.config.ee_concurrency - running)]:
                move(op, "RUNNING", startTime=_now(), progress=0.0)
                threading.Thread(target=self._run, args=(op,), name=f"ee-task-{op.id}", daemon=True).start()
            self.stats.peak_in_flight = max(self.stats.peak_in_flight, self.in_flight)

    def _run(self, op: Operation) -> None:
        duration = max(0.0, self.config.task_seconds)
        start = time.monotonic()
        while True:
            elapsed = time.monotonic() - start
            with self.lock:
                if op.cancel_requested:
                    self._finish(op, "CANCELLED", {"code": _CODES["CANCELLED"], "message": "Cancelled."})
                    return
                op.metadata["progress"] = round(min(1.0, elapsed / duration) if duration else 1.0, 3)
            if elapsed >= duration:
                break
            time.sleep(min(0.05, duration - elapsed))
        injected = self.faults.take("task_failure", op.metadata["description"])
        if injected:
            self._finish(op, "FAILED", {"code": _CODES["INTERNAL"], "message": injected.message})
            return
        try:
            uris, eecu = self._produce(op)
        except (EvaluationError, DriveError) as exc:
            self._finish(
                op,
                "FAILED",
                {"code": _CODES["INVALID_ARGUMENT"], "message": str(getattr(exc, "message", exc))},
            )
            return
        except Exception as exc:  # an emulator bug must still end the task, visibly
            self._finish(op, "FAILED", {"code": _CODES["INTERNAL"], "message": f"Internal error: {exc!r}"})
            return
        op.metadata["destinationUris"] = uris
        op.metadata["batchEecuUsageSeconds"] = eecu
        self._finish(op, "SUCCEEDED", None)

    def _finish(self, op: Operation, state: str, error: dict[str, Any] | None) -> None:
        with self.lock:
            if op.done or self.operations.get(op.id) is not op:
                return
            move(op, state, endTime=_now())
            if state == "SUCCEEDED":
                op.metadata["progress"] = 1.0
            op.done, op.error = True, error
            self._schedule()
            self._on_change()

    def cancel(self, name: str) -> None:
        with self.lock:
            op = self.get_operation(name)
            if op.done:
                if self.status("cancel_done") >= 400:
                    raise self._error("cancel_done", f"Operation {name} has already completed.")
                return
            if op.state == "PENDING":
                op.cancel_requested = True
                self._finish(op, "CANCELLED", {"code": _CODES["CANCELLED"], "message": "Cancelled."})
            elif op.state != "CANCELLING":  # a second cancel while cancelling changes nothing
                op.cancel_requested = True
                move(op, "CANCELLING")

    def get_operation(self, name: str) -> Operation:
        op_id = name.rsplit("/", 1)[-1]
        with self.lock:
            self._forget_expired()
            op = self.operations.get(op_id)
        if op is None or not name.startswith(f"projects/{op.project}/"):
            raise ApiError(404, f"Operation {name} not found.", "NOT_FOUND")
        return op

    def list_operations(self, project: str, caller: str | None = None) -> list[Operation]:
        """The caller's recent operations (ee/data.py: one "for each task submitted to EE by the
        current user"), in the configured order (EE documents none). ``caller=None`` (no
        authentication, or the admin view) lists everybody's."""
        with self.lock:
            self._forget_expired()
            ops = [op for op in self.operations.values() if op.project == project and caller in (None, op.caller)]
        order = self.config.operations_order
        if order == "random":
            random.shuffle(ops)
            return ops
        return sorted(ops, key=lambda op: op.seq, reverse=order == "newest")

    def states(self) -> dict[str, int]:
        with self.lock:
            return dict(Counter(op.state for op in self.operations.values()))

    # ---------------------------------------------------------------- evaluation and outputs

    def evaluator(self) -> Evaluator:
        return Evaluator(
            self._load_table, self._load_image, strict=self.config.strict_evaluation, catalogue=self.catalogue
        )

    def _check_expression(self, expression: dict[str, Any]) -> None:
        """EE checks every call against its algorithm list before it runs anything; under
        ``strict_evaluation`` an algorithm the emulator only synthesizes is refused as well."""
        message = check_calls(expression)
        if message is None and self.config.strict_evaluation:
            inexact = sorted(function_names(expression) - evaluated_exactly())
            if inexact:
                message = unsupported_message(inexact[0])
        if message is not None:
            raise ApiError(400, message, "INVALID_ARGUMENT")

    def _load_table(self, table_id: str) -> list[Feature]:
        with self.lock:
            asset = self.assets.get(self._asset_name(table_id))
        if not asset or asset["type"] != "TABLE":
            raise EvaluationError(f"Collection.loadTable: Collection asset '{table_id}' not found.")
        return [
            Feature(Geometry(shape(f["geometry"])) if f.get("geometry") else None, dict(f.get("properties") or {}))
            for f in asset["_features"]
        ]

    def _load_image(self, image_id: str) -> Image:
        with self.lock:
            asset = self.assets.get(self._asset_name(image_id))
        if not asset or asset["type"] != "IMAGE":
            raise EvaluationError(f"Image.load: Image asset '{image_id}' not found.")
        return self.evaluator().evaluate(asset["_expression"])

    def _asset_name(self, asset_id: str) -> str:
        if asset_id.startswith("projects/"):
            return asset_id
        if asset_id.startswith(("users/", "projects/")):
            return f"projects/earthengine-legacy/assets/{asset_id}"
        # a relative id in an expression is a public catalogue asset (ee/_cloud_api_utils.py)
        return f"projects/earthengine-public/assets/{asset_id}"

    def _produce(self, op: Operation) -> tuple[list[str], float]:
        with counting_reads() as images_read:
            value = self.evaluator().evaluate(op.body["expression"])
            file_opts = op.body.get("fileExportOptions")
            if op.kind == "image":
                return self._produce_image(op, value, file_opts, images_read)
        return self._produce_table(op, value, file_opts)

    def _produce_image(
        self, op: Operation, value: Any, file_opts: dict[str, Any] | None, images_read: Callable[[], int]
    ) -> tuple[list[str], float]:
        image = value if isinstance(value, Image) else None
        if image is None:
            raise EvaluationError("Export.image: the expression is not an Image.")
        grid = outputs.pixel_grid(image)
        max_pixels = int((op.body.get("maxPixels") or {}).get("value", outputs.DEFAULT_MAX_PIXELS))
        if grid.pixels > max_pixels:
            raise EvaluationError(
                f"Export too large: specified {grid.pixels} pixels (max: {max_pixels}). "
                "Specify higher maxPixels value if you intend to export a large area."
            )
        limit = self.config.max_pixels_per_task
        if limit is not None and grid.pixels > limit:
            raise EvaluationError(f"Output of image computation is too large ({grid.pixels} pixels > {limit}).")
        if not file_opts:
            return self._store_asset(op, "IMAGE", {"_expression": op.body["expression"]}), self._cost(grid, image, 1)
        dims = (file_opts.get("geoTiffOptions") or {}).get("tileDimensions") or {}
        shard = (
            int(dims.get("width", self.config.file_dimensions)),
            int(dims.get("height", self.config.file_dimensions)),
        )
        with tempfile.TemporaryDirectory(dir=self.work_dir) as tmp:
            prefix = self._prefix(op, file_opts)
            paths = outputs.write_geotiffs(image, grid, Path(tmp), prefix.rsplit("/", 1)[-1], shard)
            # computed: what it read is known now, and a computation over the limits fails here
            eecu = self._cost(grid, image, images_read())
            return self._deliver(op, file_opts, prefix, paths, "image/tiff"), eecu

    def _cost(self, grid: Any, image: Image, images: int) -> float:
        """EECU-seconds of an image computation, after EE's memory and time limits."""
        held = grid.pixels * max(1, len(image.bands)) * max(1, images)
        if self.config.memory_limit_pixels is not None and held > self.config.memory_limit_pixels:
            raise EvaluationError("User memory limit exceeded.")
        eecu = round(held * EECU_SECONDS_PER_PIXEL_READ, 6)
        if self.config.task_timeout_seconds is not None and eecu > self.config.task_timeout_seconds:
            raise EvaluationError("Computation timed out.")
        return eecu

    def _produce_table(self, op: Operation, value: Any, file_opts: dict[str, Any] | None) -> tuple[list[str], float]:
        collection = value if isinstance(value, FeatureCollection) else None
        if collection is None:
            raise EvaluationError("Export.table: the expression is not a FeatureCollection.")
        eecu = round(len(collection.features) * 1e-4, 6)
        if not file_opts:
            feats = [f.to_geojson() for f in collection.features]
            truncate = self.faults.take("truncate", op.metadata["description"])
            if truncate:
                feats = feats[: max(0, len(feats) - truncate.drop)]
            return self._store_asset(op, "TABLE", {"_features": feats}), eecu
        fmt = str(file_opts.get("fileFormat") or "CSV")
        with tempfile.TemporaryDirectory(dir=self.work_dir) as tmp:
            prefix = self._prefix(op, file_opts)
            selectors = op.body.get("selectors")
            paths = outputs.write_table(collection, Path(tmp), prefix.rsplit("/", 1)[-1], fmt, selectors)
            mime = "text/csv" if fmt.upper() == "CSV" else "application/geo+json"
            return self._deliver(op, file_opts, prefix, paths, mime), eecu

    @staticmethod
    def _prefix(op: Operation, file_opts: dict[str, Any]) -> str:
        dest = file_opts.get("driveDestination") or file_opts.get("cloudStorageDestination") or {}
        return str(dest.get("filenamePrefix") or op.metadata["description"])

    def _check_service_account_storage(self, op: Operation, paths: list[Path]) -> None:
        """EE writes Drive exports as the caller; a service account has no Drive storage of its
        own (Google, 2025: "Service Accounts do not have storage quota"), so its export fails."""
        limit = self.config.service_account_drive_quota_bytes
        if not op.caller or not op.caller.endswith(".gserviceaccount.com") or limit is None:
            return
        needed = sum(p.stat().st_size for p in paths)
        if self.drive.used_by(op.caller) + needed > limit:
            raise DriveError(403, SERVICE_ACCOUNT_NO_STORAGE, "storageQuotaExceeded")

    def _deliver(
        self, op: Operation, file_opts: dict[str, Any], prefix: str, paths: list[Path], mime: str
    ) -> list[str]:
        if "driveDestination" in file_opts:
            self._check_service_account_storage(op, paths)
            folder = self.drive.folder_for_export(file_opts["driveDestination"].get("folder"))
            self.drive.add_files(folder.id, [(p.name, p, mime) for p in paths], owner=op.caller)
            return [f"https://drive.google.com/#folders/{folder.id}"]
        dest = file_opts.get("cloudStorageDestination")
        if dest is None:
            raise EvaluationError("An export destination is required.")
        if not self.config.gcs_url:
            raise EvaluationError("Cloud Storage exports need the emulator to be started with --gcs-url.")
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        client = storage.Client(
            project=self.config.project,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": self.config.gcs_url},
        )
        bucket = client.bucket(dest["bucket"])
        directory = prefix.rsplit("/", 1)[0] + "/" if "/" in prefix else ""
        for p in paths:
            bucket.blob(directory + p.name).upload_from_filename(str(p), content_type=mime)
        return [f"https://console.developers.google.com/storage/browser/{dest['bucket']}/{directory}"]

    # ---------------------------------------------------------------- assets

    def _asset_resource(self, asset: dict[str, Any]) -> dict[str, Any]:
        hidden = ("featureCount",) if self.config.feature_count == "never" else ()
        return {k: v for k, v in asset.items() if not k.startswith("_") and k not in hidden}

    def _store_asset(self, op: Operation, asset_type: str, payload: dict[str, Any]) -> list[str]:
        dest = op.body["assetExportOptions"]["earthEngineDestination"]
        name = dest["name"]
        with self.lock:
            if name in self.assets and not dest.get("overwrite"):
                raise EvaluationError(f"Cannot overwrite asset '{name}'.")
            record: dict[str, Any] = {"type": asset_type, "name": name, "id": asset_id_of(name), "updateTime": _now()}
            record.update(payload)
            if asset_type == "TABLE":
                record.update(_table_counts(payload["_features"]))
            self.assets[name] = record
            self._on_change()
        return [f"https://code.earthengine.google.com/?asset={name}"]

    def _require_folder(self, parent: str) -> None:
        """Assets live in the project root or in an existing folder (call with the lock held)."""
        if not parent.endswith("/assets") and self.assets.get(parent, {}).get("type") != "FOLDER":
            raise ApiError(400, f"Folder '{parent}' does not exist or caller does not have access.", "INVALID_ARGUMENT")

    def get_asset(self, name: str) -> dict[str, Any]:
        with self.lock:
            asset = self.assets.get(name)
        if asset is None:
            raise ApiError(404, f"Asset '{name}' does not exist or caller does not have access.", "NOT_FOUND")
        return self._asset_resource(asset)

    def create_asset(
        self, project: str, asset_id: str, body: dict[str, Any], overwrite: bool = False
    ) -> dict[str, Any]:
        if not asset_id:
            raise ApiError(400, "assetId is required.", "INVALID_ARGUMENT")
        kind = str(body.get("type", "")).upper()
        name = f"projects/{project}/assets/{asset_id.strip('/')}"
        parent = name.rsplit("/", 1)[0]
        with self.lock:
            self._require_folder(parent)
            if name in self.assets and not overwrite:
                raise self._error("asset_exists", f"Cannot overwrite asset '{name}'.")
            record: dict[str, Any] = {"type": kind, "name": name, "id": asset_id_of(name), "updateTime": _now()}
            if kind in ("FOLDER", "IMAGE_COLLECTION"):
                pass
            elif kind == "TABLE" and isinstance(body.get("features"), list):  # emulator seeding
                record.update(_features=body["features"], **_table_counts(body["features"]))
            else:
                raise ApiError(400, f"Asset type {kind!r} cannot be created this way.", "INVALID_ARGUMENT")
            self.assets[name] = record
            self._on_change()
            return self._asset_resource(record)

    def children(self, parent: str) -> list[dict[str, Any]]:
        prefix = parent.rstrip("/") + "/"
        with self.lock:
            kids = [a for n, a in self.assets.items() if n.startswith(prefix) and "/" not in n[len(prefix) :]]
        return [self._asset_resource(a) for a in sorted(kids, key=lambda a: a["name"])]

    def table_features(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            asset = self.assets.get(name)
        if asset is None or asset["type"] != "TABLE":
            raise ApiError(404, f"Table asset '{name}' does not exist or caller does not have access.", "NOT_FOUND")
        return [{"type": "Feature", "id": str(i), **f} for i, f in enumerate(asset["_features"])]

    def delete_asset(self, name: str) -> None:
        with self.lock:
            self.get_asset(name)
            if self.children(name):
                raise ApiError(400, f"Folder '{name}' is not empty.", "FAILED_PRECONDITION")
            del self.assets[name]
            self._on_change()

    def copy_asset(self, source: str, destination: str, overwrite: bool) -> dict[str, Any]:
        with self.lock:
            src = self.assets.get(source)
            if src is None:
                raise ApiError(404, f"Asset '{source}' does not exist or caller does not have access.", "NOT_FOUND")
            if src["type"] == "FOLDER":
                raise ApiError(400, "Folders cannot be copied.", "INVALID_ARGUMENT")
            parent = destination.rsplit("/", 1)[0]
            self._require_folder(parent)
            if destination in self.assets and not overwrite:
                raise ApiError(400, f"Cannot overwrite asset '{destination}'.", "ALREADY_EXISTS")
            copy = dict(src, name=destination, id=asset_id_of(destination), updateTime=_now())
            self.assets[destination] = copy
            self._on_change()
            return self._asset_resource(copy)

    def move_asset(self, source: str, destination: str) -> dict[str, Any]:
        """``ee.data.renameAsset``: copy, then delete the source."""
        with self.lock:
            moved = self.copy_asset(source, destination, overwrite=False)
            del self.assets[source]
            self._on_change()
            return moved

    def update_asset(self, name: str, changes: dict[str, Any], paths: list[str]) -> dict[str, Any]:
        """``ee.data.updateAsset``: only ``properties``, ``startTime``, ``endTime`` (and their
        ``properties.NAME`` parts); an empty mask updates all of them (the REST reference)."""
        with self.lock:
            self.get_asset(name)
            asset = self.assets[name]
            for path in paths or ["properties", "startTime", "endTime"]:
                key = path.replace("start_time", "startTime").replace("end_time", "endTime")
                if key.startswith("properties."):
                    prop = key.split(".", 1)[1].strip('"')
                    value = (changes.get("properties") or {}).get(prop)
                    props = asset.setdefault("properties", {})
                    props.pop(prop, None) if value is None else props.__setitem__(prop, value)
                elif key in ("properties", "startTime", "endTime"):
                    asset.pop(key, None) if changes.get(key) is None else asset.__setitem__(key, changes[key])
                else:
                    raise ApiError(400, f"Field '{path}' cannot be updated.", "INVALID_ARGUMENT")
            asset["updateTime"] = _now()
            self._on_change()
            return self._asset_resource(asset)

    def compute(self, expression: dict[str, Any]) -> Any:
        from gee_emulator.evaluator import to_json

        self._check_expression(expression)
        try:
            return to_json(self.evaluator().evaluate(expression))
        except EvaluationError as exc:
            raise ApiError(400, str(exc), "INVALID_ARGUMENT") from exc

    # ---------------------------------------------------------------- persistence

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "operations": [
                    {
                        "id": op.id,
                        "project": op.project,
                        "kind": op.kind,
                        "body": op.body,
                        "metadata": dict(op.metadata),  # as it is now: a task may end while it is saved
                        "done": op.done,
                        "error": op.error,
                        "seq": op.seq,
                        "caller": op.caller,
                    }
                    for op in self.operations.values()
                ],
                "request_ids": [[p, c, r, o] for (p, c, r), o in self.request_ids.items()],
                "assets": list(self.assets.values()),
                "seq": self._seq,
            }

    def _caller_of(self, op_id: str) -> str:
        op = self.operations.get(op_id)
        return (op.caller or "") if op else ""

    def restore(self, data: dict[str, Any]) -> None:
        with self.lock:
            self._seq = int(data.get("seq", 0))
            for d in data.get("operations", []):
                op = Operation(
                    d["id"],
                    d["project"],
                    d["kind"],
                    d["body"],
                    d["metadata"],
                    d["done"],
                    d["error"],
                    seq=d["seq"],
                    caller=d.get("caller"),
                )
                if not op.done:  # interrupted by the restart: a new attempt, queued, as EE retries tasks
                    op.metadata.update(state="PENDING", progress=0.0)
                    op.metadata["attempt"] = int(op.metadata.get("attempt", 1)) + 1
                self.operations[op.id] = op
            # a snapshot from before request ids were per caller: the caller is its operation's
            self.request_ids = {
                (k[0], k[1], k[2]) if len(k) == 4 else (k[0], self._caller_of(k[2]), k[1]): k[-1]
                for k in data.get("request_ids", [])
            }
            self.assets = {a["name"]: a for a in data.get("assets", [])}
            self._schedule()
