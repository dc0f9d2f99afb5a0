"""GeeExportOperator: one EE export per task instance, waited for in the same task instance.

Submitting and waiting in ONE task instance that defers keeps one slot of the ``gee_tasks`` pool
(created with ``include_deferred``) for the whole life of one EE task: the pool is the notebook's
old ``maxTasks``. A separate export task and sensor would free the slot in between.

Retries never duplicate an EE task: the ``requestId`` is derived from the task instance and a
request generation, and EE starts at most one operation per ``requestId``. On Airflow 3.3+ the
operation (with its generation) is kept in the task state store through ``ResumableJobMixin``;
before 3.3 (no store) a retry looks the task instance's operations up in EE's listing instead (see
:meth:`GeeExportOperator._execute_without_state_store`). Either way a retry re-attaches to a
running operation, returns a SUCCEEDED one without submitting, and submits a new one (next
generation) only after FAILED/CANCELLED.

A tile that EE refuses for its size (:data:`~airflow_provider_gee.utils.splitting.SIZE_ERRORS`) is
exported as quadrants instead, one after the other in the same task instance and pool slot; the
split plan (which parts, their EE tasks) is kept in the task state store next to the operation, so
a retried or resumed task goes on with the part it was at.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import re
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import ResumableJobMixin
from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_3_PLUS
from airflow.sdk import Context

from airflow_provider_gee.exceptions import (
    EarthEngineError,
    EarthEngineRejected,
    EarthEngineTaskFailed,
    EarthEngineTooBig,
    EecuBudgetSpent,
    GeeConfigurationError,
)
from airflow_provider_gee.links.drive import DriveFolderLink, drive_folder_url
from airflow_provider_gee.links.earth_engine import EarthEngineAssetLink, EarthEngineTaskLink, asset_url, task_url
from airflow_provider_gee.operators.base import GeeBaseOperator, default_deferrable
from airflow_provider_gee.utils.compact_tiles import expand_tile
from airflow_provider_gee.utils.naming import (
    MAX_DESCRIPTION,
    RUN_TOKEN,
    default_workload_tag,
    description_problem,
    export_fingerprint,
    request_id,
    run_token,
    sanitize_description,
    scoped_description,
    scoped_name,
    tile_id_problem,
    workload_tag_problem,
)
from airflow_provider_gee.utils.operations import (
    ACTIVE_STATES,
    DEFAULT_WAIT_TIMEOUT,
    DESTINATIONS,
    EXPORT_KINDS,
    LIST_MAX_PAGES,
    TERMINAL_STATES,
    export_extensions,
    export_result,
    rest_file_format,
    summarize,
)
from airflow_provider_gee.utils.task_state import TaskState

if TYPE_CHECKING:
    from airflow_provider_gee.utils.splitting import SplitPlan

# The hook and triggers (the Google provider's base hook, googleapiclient, aiohttp) and geopandas,
# pandas and pyproj (airflow_provider_gee.utils.tiling) are imported where they are used: every task
# process parses its DAG file, so a module-level import is paid on every task start of every tile,
# also by the resumed half, which needs none of them (tests/integration/test_import_cost.py keeps it so).

#: connections (and impersonation chains) whose identity was seen to have Drive storage, per process
_DRIVE_STORAGE_OK: set[tuple[str, str, str | None]] = set()
# sanitize_description, request_id and MAX_DESCRIPTION live in utils.naming (imported from here before)
__all__ = ["MAX_DESCRIPTION", "GeeExportOperator", "request_id", "sanitize_description"]
#: requestIds tried in one submission when EE refuses a spent one
MAX_GENERATION_STEPS = 3
#: EE's refusal of a requestId used before with another body (the wording is not documented)
REQUEST_ID_REFUSED = re.compile(r"request[ _-]?id", re.IGNORECASE)
#: task state store key of a split tile's plan (parts, their EE tasks, results)
SPLIT_KEY = "gee_split"
#: task instance states that hold a pool slot (in a pool created with include_deferred)
SLOT_STATES = frozenset({"queued", "running", "deferred"})
#: task instance states whose EE task may run on without them: killed (waiting to retry) or failed
LEFT_BEHIND_STATES = frozenset({"up_for_retry", "failed", "restarting"})


class _TooBig(Exception):
    """EE refused the tile (or part) for its size and splitting applies: ``failure`` says which EE
    task (if any), EE's message and what it cost."""

    def __init__(self, failure: dict[str, Any]) -> None:
        super().__init__(failure.get("error"))
        self.failure = failure


class GeeExportOperator(ResumableJobMixin, GeeBaseOperator):
    """Export one EE image or table (typically one tile) and wait until the EE task ends.

    :param tile: the tile dict (from ``GridTilesOperator``/``grid_tiles``/``chunk_points``) this
        instance exports; its geometry is the default export region and its ``tile_id`` names the
        outputs. Map over it with ``.expand(tile=...)``. A compact tile is expanded first
        (:func:`~airflow_provider_gee.utils.compact_tiles.expand_tile`).
    :param build: ``build(tile, context)`` returning the ``ee.Image`` or ``ee.FeatureCollection`` to
        export (``context["data_interval_start"]`` etc. for time series). Called only when a new EE
        task must be submitted.
    :param asset: instead of ``build``, an EE asset id to export as it is; resolved as ``ee`` does
        (``USGS/SRTMGL1_003`` is the public catalogue's): give your own assets in full.
    :param export_type: ``"image"`` or ``"table"``.
    :param destination: ``"drive"``, ``"asset"`` or ``"gcs"`` (templated). EE writes Drive exports
        as the caller: service accounts have no Drive storage, so they export to ``"gcs"``.
    :param folder: Drive folder name (templated).
    :param bucket: Cloud Storage bucket (templated).
    :param asset_id: destination asset (templated); relative ids are in the connection's project.
        With a tile it must contain ``{tile_id}``.
    :param file_name_prefix: output file prefix (templated; default: the description).
        ``{tile_id}`` is replaced by the tile's id.
    :param description: EE task description (templated; ``{tile_id}`` allowed). Default:
        ``<dag>.<task>.<tile>.<data interval start>``, sanitized to EE's rules.
    :param region: export region: an ``ee.Geometry``, a bbox ``[minx, miny, maxx, maxy]``, WKT,
        GeoJSON, a vector file or an EE table (as for tiling); default: the tile's geometry.
    :param scale: metres per pixel (image exports).
    :param crs: output CRS (image exports), e.g. ``"EPSG:4326"``.
    :param crs_transform: output affine transform (image exports).
    :param max_pixels: EE's ``maxPixels`` guard.
    :param file_format: e.g. ``"GeoTIFF"``, ``"CSV"``, ``"GeoJSON"``.
    :param file_dimensions: GeoTIFF parts' size in pixels (int or (width, height)).
    :param overwrite: overwrite an existing destination asset.
    :param export_options: further keyword arguments for ``ee.batch.Export.*`` (EE's names).
    :param gcp_conn_id: the Airflow connection id.
    :param impersonation_chain: optional service account(s) to impersonate (templated).
    :param deferrable: wait in the triggerer instead of in the worker (default: Airflow's
        ``[operators] default_deferrable``). Either way the task holds its pool slot while it waits.
    :param poll_interval: seconds between status checks.
    :param wait_timeout: seconds to wait for the EE task before cancelling it and failing (default:
        the task's ``execution_timeout`` if set, else EE's own 10-day limit on a task plus an hour).
    :param max_ee_queue: admission control: before submitting, wait (deferred, holding the pool
        slot) while the connection's identity has this many tasks PENDING or RUNNING in the
        project, counting its tasks started outside Airflow too (EE lists only the caller's own
        tasks: other identities' are not seen). A soft limit: tiles admitted at the same moment
        may exceed it briefly; the pool stays the hard bound. It is also the way to stay clear of
        EE's queue limit (3,000 tasks per project), whose refusals are otherwise retried.
    :param max_eecu_seconds: the DAG run's compute budget: before submitting, the export adds up
        what the run's exports have used (``batchEecuUsageSeconds`` of the EE tasks whose
        description carries the run's token, as every description does with ``run_scoped_names``;
        without it, those whose description starts with the DAG id, created since the run started,
        which counts other runs of the DAG in flight too: one paged listing per submission) and
        fails, without submitting and without retries, once that reaches the budget.
        Exports already running finish; a budget is a stop for new work, not a hard cap.
    :param end_from_trigger: when deferred, a successful export ends in the triggerer, which writes
        the result to XCom, instead of resuming on a worker (the Drive folder link then stays the
        search by the folder's name, not the folder by id): one task
        process less per tile, and no window for Airflow's stale defer-exit race
        (apache/airflow#72716), which otherwise retries tiles whose EE task ends within seconds.
        Failures still resume on a worker (retries, cancelling). Off by default because Airflow
        3.1-3.3 store a triggerer's XCom as JSON text: the provider's operators read either kind
        (:func:`~airflow_provider_gee.utils.operations.as_export_result`), a task of yours that
        pulls the result gets a string. Ignored for a task with ``outlets`` (asset events need the
        worker); ``dag.test()`` resumes every deferred task and returns the same result.
    :param split_on_error: when EE refuses the tile for its size ("User memory limit exceeded",
        "Computation timed out", ...: :data:`~airflow_provider_gee.utils.splitting.SIZE_ERRORS`),
        export its quadrants ``<tile_id>_q0`` .. ``_q3`` instead, one at a time in this task's pool
        slot, cut on the export's pixel lattice so that they mosaic. Needs ``tile`` and the tile's
        own region (``region=None``); ``build`` gets each part as its tile. The result lists the
        parts (``parts``) and what the tile cost in all (``eecu_seconds``, refused tasks included);
        the harvest, mosaic, table stitch, merge and report take them as they take shards.
    :param max_split_depth: how often a part may be split again (2: down to 1/16 of the tile);
        a part still too big then fails with EE's message.
    :param max_tile_eecu_seconds: one tile's compute budget: a split tile exports no further part
        once its refused tasks and exported parts have used this many EECU-seconds.
    :param run_scoped_names: add the run's token (:func:`~airflow_provider_gee.utils.naming.run_token`:
        8 hex characters of the deployment, DAG and run) to every name the export gives outside
        Airflow: the file prefix (``r0001c0001_3f2a9c1e``), the asset id and the description, at
        ``{run_token}`` where a name holds it, else appended with ``_``. Two runs in flight at once
        (a backfill, a manual run beside a scheduled one, staging beside production) then never
        write, harvest or delete each other's outputs. ``False`` keeps names exactly as given
        (a fixed asset id that each run replaces): then one run of the DAG at a time
        (``max_active_runs=1``), or names templated per run; ``gee-dag-check`` warns otherwise.
    :param workload_tag: the EE workload tag the task's compute is reported under (EE's usage
        reports and Cloud Monitoring's ``workload_tag`` label), templated. Default
        ``<dag_id>.<task_id>`` within EE's rule (1-63 letters, digits, ``-_.``); ``""`` sends none.

    Unless given (or set in ``default_args``), ``retries`` is 3 and ``retry_delay`` 30 seconds.
    """

    template_fields: Sequence[str] = (
        "destination", "description", "folder", "bucket", "asset_id", "file_name_prefix", "asset", "export_options",
        "scale", "tile", "workload_tag", *GeeBaseOperator.template_fields,
    )  # fmt: skip
    operator_extra_links = (EarthEngineTaskLink(), DriveFolderLink(), EarthEngineAssetLink())
    external_id_key = "gee_operation"
    ui_color = "#d6ecd2"
    # a mapped export is named by its tile (or chunk) id in Airflow's UI, not by its map index
    default_map_index_template = "{{ task.tile['tile_id'] if task.tile else '' }}"

    def __init__(
        self,
        *,
        tile: dict[str, Any] | None = None,
        build: Callable[[dict[str, Any] | None, Context], Any] | None = None,
        asset: str | None = None,
        export_type: str = "image",
        destination: str = "drive",
        folder: str | None = None,
        bucket: str | None = None,
        asset_id: str | None = None,
        file_name_prefix: str | None = None,
        description: str | None = None,
        region: Any = None,
        scale: float | None = None,
        crs: str | None = None,
        crs_transform: Sequence[float] | None = None,
        max_pixels: int | None = None,
        file_format: str | None = None,
        file_dimensions: int | Sequence[int] | None = None,
        overwrite: bool = False,
        export_options: dict[str, Any] | None = None,
        deferrable: bool | None = None,
        poll_interval: float = 10.0,
        wait_timeout: float | None = None,
        max_ee_queue: int | None = None,
        end_from_trigger: bool = False,
        max_eecu_seconds: float | None = None,
        split_on_error: bool = True,
        max_split_depth: int = 2,
        max_tile_eecu_seconds: float | None = None,
        run_scoped_names: bool = True,
        workload_tag: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.workload_tag = workload_tag
        self.tile = tile
        self.build = build
        self.asset = asset
        self.export_type = export_type
        self.destination = destination
        self.folder = folder
        self.bucket = bucket
        self.asset_id = asset_id
        self.file_name_prefix = file_name_prefix
        self.description = description
        self.region = region
        self.scale = scale
        self.crs = crs
        self.crs_transform = crs_transform
        self.max_pixels = max_pixels
        self.file_format = file_format
        self.file_dimensions = file_dimensions
        self.overwrite = overwrite
        self.export_options = export_options
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.poll_interval = poll_interval
        if wait_timeout is None:
            wait_timeout = self.execution_timeout.total_seconds() if self.execution_timeout else DEFAULT_WAIT_TIMEOUT
        self.wait_timeout = wait_timeout
        self.max_ee_queue = max_ee_queue
        self.end_from_trigger = end_from_trigger
        self.max_eecu_seconds = max_eecu_seconds
        self.split_on_error = split_on_error
        self.max_split_depth = max_split_depth
        self.max_tile_eecu_seconds = max_tile_eecu_seconds
        self.run_scoped_names = run_scoped_names
        # the run's token (utils.naming.run_token), set from the context where execution starts
        self._run_token = ""
        self._operation: dict[str, Any] | None = None
        # set while a part of a split tile is exported: appended to names without {tile_id}
        self._part_suffix = ""
        # full names of the EE assets the export reads (its lineage inputs), known once submitted
        self._inputs: list[str] | None = None
        # what the mixin read from task_state_store (get_job_status), so submit_job need not read it again
        self._stored: dict[str, Any] | None = None

    # ------------------------------------------------------------------ configuration

    @property
    def tile(self) -> dict[str, Any] | None:
        """The tile this instance exports, always complete: a compact tile (what
        ``GridTilesOperator`` returns) is expanded where it is set, by ``__init__`` or by template
        rendering, so ``build(tile, context)`` and the splitting read ``geometry`` and ``cell``."""
        return self._tile

    @tile.setter
    def tile(self, value: Any) -> None:
        self._tile = expand_tile(value)

    @property
    def tile_id(self) -> str | None:
        return None if self.tile is None else str(self.tile.get("tile_id"))

    def _fill(self, text: str | None) -> str | None:
        """``text`` with ``{tile_id}`` filled in and the run's token added (``run_scoped_names``); a
        part of a split tile gets its own name also where ``text`` has no ``{tile_id}`` (its
        suffix is appended last), so parts never share outputs."""
        if text is None:
            return None
        name = text.replace("{tile_id}", self.tile_id or "")
        # a placed token is filled whatever run_scoped_names says; only the appended one is optional
        if self._run_token and (self.run_scoped_names or RUN_TOKEN in name):
            name = scoped_name(name, self._run_token)
        return name if "{tile_id}" in text else name + self._part_suffix

    def _workload_tag(self) -> str | None:
        """The workload tag sent with the export: the given one, ``None`` for ``""``, else
        ``<dag_id>.<task_id>`` within EE's rule."""
        if self.workload_tag is not None:
            return str(self.workload_tag) or None
        return default_workload_tag(self.dag_id, self.task_id)

    def _file_format(self) -> str | None:
        """The file format EE is asked for: ``file_format``, or ``fileFormat`` in ``export_options``."""
        return (self.export_options or {}).get("fileFormat", self.file_format)

    def _set_run(self, context: Context) -> None:
        """Know the run this execution belongs to: its token scopes every name given outside Airflow."""
        ti = context.get("ti")
        self._run_token = run_token(ti.dag_id, ti.run_id) if ti is not None else ""

    def _fingerprint(self) -> str:
        """What this export writes and where (:func:`~airflow_provider_gee.utils.naming.export_fingerprint`);
        a stored EE task or split plan with another fingerprint is another export's."""
        return export_fingerprint(
            {
                "tile": self.tile, "asset": self.asset, "export_type": self.export_type,
                "destination": self.destination, "folder": self.folder, "bucket": self.bucket,
                "asset_id": self._fill(self.asset_id), "file_name_prefix": self._fill(self.file_name_prefix),
                "region": self.region, "scale": self.scale, "crs": self.crs, "crs_transform": self.crs_transform,
                "max_pixels": self.max_pixels, "file_format": self.file_format,
                "file_dimensions": self.file_dimensions, "overwrite": self.overwrite,
                "export_options": self.export_options,
            }
        )  # fmt: skip

    def validate(self) -> None:
        """Check the arguments; every error names the argument and the fix (nothing remote yet)."""
        if self.export_type not in EXPORT_KINDS:
            raise GeeConfigurationError(f"export_type={self.export_type!r}: use one of {EXPORT_KINDS}.")
        if self.destination not in DESTINATIONS:
            raise GeeConfigurationError(f"destination={self.destination!r}: use one of {DESTINATIONS}.")
        if (self.build is None) == (self.asset is None):
            raise GeeConfigurationError("Give exactly one of build=callable(tile, context) or asset='asset id'.")
        if self.build is not None and not callable(self.build):
            raise GeeConfigurationError(f"build must be callable(tile, context), got {type(self.build).__name__}.")
        if self.tile is not None and not (isinstance(self.tile, dict) and "tile_id" in self.tile):
            raise GeeConfigurationError("tile must be a tile dict with 'tile_id' (from grid_tiles or chunk_points).")
        if self.tile is not None and (problem := tile_id_problem(str(self.tile["tile_id"]))):
            raise GeeConfigurationError(f"tile_id={self.tile['tile_id']!r}: {problem}; rename the tile.")
        if self.destination == "asset":
            if not self.asset_id:
                raise GeeConfigurationError("destination='asset' needs asset_id='folder/name_{tile_id}'.")
            if self.tile is not None and "{tile_id}" not in self.asset_id:
                raise GeeConfigurationError(
                    f"asset_id={self.asset_id!r} has no '{{tile_id}}': every tile would write the same asset."
                )
        if self.destination == "gcs" and not self.bucket:
            raise GeeConfigurationError("destination='gcs' needs bucket='my-bucket'.")
        if self.scale is not None and not (isinstance(self.scale, (int, float)) and self.scale > 0):
            raise GeeConfigurationError(f"scale must be a positive number of metres, got {self.scale!r}.")
        if self.crs is not None and not str(self.crs).upper().startswith("SR-ORG:"):  # EE's own codes
            from pyproj import CRS
            from pyproj.exceptions import CRSError

            try:
                CRS.from_user_input(self.crs)
            except CRSError:
                raise GeeConfigurationError(
                    f"crs={self.crs!r} is not a coordinate reference system: use an EPSG code such as 'EPSG:32633' "
                    "or a WKT string."
                ) from None
        if self.crs_transform is not None and not (
            isinstance(self.crs_transform, list | tuple)
            and len(self.crs_transform) == 6
            and all(isinstance(v, int | float) for v in self.crs_transform)
        ):
            raise GeeConfigurationError(
                f"crs_transform must be 6 numbers [xScale, xShearing, xTranslation, yShearing, yScale, yTranslation], "
                f"got {self.crs_transform!r}."
            )
        if isinstance(self.region, list | tuple | dict):
            from airflow_provider_gee.utils.tiling import read_region

            read_region(self.region)  # a bad bbox or GeoJSON fails here, named, before anything remote
        if self.export_type == "image" and self.region is None and self.tile is None:
            raise GeeConfigurationError("An image export needs a region: pass tile=... or region=....")
        if not isinstance(self.max_split_depth, int) or self.max_split_depth < 0:
            raise GeeConfigurationError(f"max_split_depth must be a whole number >= 0, got {self.max_split_depth!r}.")
        for name in ("max_eecu_seconds", "max_tile_eecu_seconds"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int | float) and value > 0):
                raise GeeConfigurationError(f"{name} must be a positive number of EECU-seconds, got {value!r}.")
        if self.workload_tag and (problem := workload_tag_problem(str(self.workload_tag))):
            raise GeeConfigurationError(f"workload_tag={self.workload_tag!r}: {problem}.")
        file_format = self._file_format()
        if self.export_type == "image" and file_format and rest_file_format(file_format, "image") != "GEO_TIFF":
            raise GeeConfigurationError(
                f"file_format={file_format!r}: image exports are harvested and verified as GeoTIFF only. EE writes "
                "TFRecord images as several files and a JSON sidecar whose names Google does not document, so "
                "their harvest could not tell complete from partial; use file_format='GeoTIFF' (the default), "
                "or ee.batch.Export directly for TFRecord."
            )
        if self.description is not None:
            # checked as given (the run's token is added later, shortened to EE's limit if need be)
            raw = self.description.replace("{tile_id}", self.tile_id or "").replace(RUN_TOKEN, "0" * 8)
            if problem := description_problem(raw):
                raise GeeConfigurationError(f"description={raw!r}: {problem}.")

    def _check_tile_names(self, context: Context) -> None:
        """A mapped export of tiles names each tile's files apart: a prefix (or the description it
        defaults to) without ``{tile_id}`` would give every tile the same names, and each tile's
        harvest would take the others' files."""
        map_index = getattr(context["ti"], "map_index", -1)
        if self.tile is None or self.destination == "asset" or map_index is None or map_index < 0:
            return
        name, text = (
            ("file_name_prefix", self.file_name_prefix) if self.file_name_prefix is not None
            else ("description", self.description)
        )  # fmt: skip
        if text is not None and "{tile_id}" not in text:
            raise GeeConfigurationError(
                f"{name}={text!r} has no '{{tile_id}}': every tile of this mapped export would write files of that "
                "one name, and each tile's harvest would take the others'. Put {tile_id} in it."
            )

    def task_description(self, context: Context) -> str:
        """The EE task's description: the user's (``{tile_id}`` filled in, the run's token added),
        or ``<dag>.<task>.<tile>.<period>.<run token>``, within EE's rules."""
        token = self._run_token if self.run_scoped_names or RUN_TOKEN in (self.description or "") else ""
        if self.description:  # as _fill names outputs: the token, then a part's suffix where no {tile_id}
            text = self.description.replace("{tile_id}", self.tile_id or "")
            tail = "" if "{tile_id}" in self.description else self._part_suffix
            return scoped_description(text, token, "_", tail)
        ti = context["ti"]
        start = context.get("data_interval_start")
        run_digest = hashlib.sha1(ti.run_id.encode(), usedforsecurity=False).hexdigest()[:10]
        period = start.strftime("%Y%m%dT%H%M") if start else run_digest
        parts = [ti.dag_id, ti.task_id, self.tile_id or f"m{ti.map_index}", period]
        return scoped_description(".".join(p for p in parts if p), token, ".")

    def _request_id(self, context: Context, generation: int) -> str:
        ti = context["ti"]
        return request_id(
            ti.dag_id, ti.task_id, ti.run_id, ti.map_index, generation, self._part_suffix,
            tile_id=self.tile_id or "", fingerprint=self._fingerprint(),
        )  # fmt: skip

    # ------------------------------------------------------------------ Airflow entry points

    def execute(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        # ``event`` is set when admission control let this task through (GeeQueueTrigger)
        if event is not None and event.get("status") == "error":
            raise EarthEngineError(f"Admission control could not read EE's queue: {event.get('message')}")
        if event is not None and event.get("status") == "timeout":
            raise EarthEngineError(f"Waited too long to submit: {event.get('message')}; nothing was submitted.")
        self._set_run(context)
        self.validate()
        self._check_tile_names(context)
        # only a later try (or a cleared task), or one coming back from a wait before submitting a
        # part, can find a split plan: the first one need not ask
        later = (context["ti"].try_number or 1) > 1 or event is not None
        plan = self._stored_plan(context) if later else None
        if plan is not None:  # a retry (or a cleared task) of a tile that was split: go on with it
            self.log.info("Tile %s was split: going on with its parts", self.tile_id)
            return self._run_split(context, plan)
        try:
            if not AIRFLOW_V_3_3_PLUS:
                return self._execute_without_state_store(context)
            return self.execute_resumable(context)
        except _TooBig as exc:
            return self._split(context, exc.failure)

    def _execute_without_state_store(self, context: Context) -> dict[str, Any]:
        """Airflow < 3.3 has no task state store, so a retry finds its operations in EE instead.

        The first try submits generation 0. A later try (or a cleared task) lists EE's operations
        and takes this task instance's own: the same description, created since its DAG run
        started. The newest decides as the stored operation does on 3.3+ (running: re-attach;
        SUCCEEDED: done; FAILED/CANCELLED: submit the next generation). If the listing lags behind
        a submission, the resubmission carries that submission's ``requestId`` and EE returns the
        operation it already started instead of a second one.
        """
        ti = context["ti"]
        self._set_run(context)
        own: list[dict[str, Any]] = []
        # a description shared by several tiles would make another tile's EE task look like ours
        own_description = self.description is None or self.tile is None or "{tile_id}" in self.description
        if (ti.try_number or 1) > 1 and not own_description:
            self.log.warning(
                "Airflow < 3.3 and description=%r is the same for every tile: not looking up earlier EE tasks "
                "(only EE's requestId de-duplication guards this retry); put {tile_id} in the description",
                self.description,
            )
        elif (ti.try_number or 1) > 1:
            own = self._own_operations(context)
            self.log.info("Airflow < 3.3: found %d earlier EE task(s) of this task instance in EE", len(own))
        if own:
            latest = own[0]
            self._operation = latest
            self._stored = {"operation": latest["name"], "generation": len(own) - 1}
            if latest["state"] in ACTIVE_STATES:
                self.log.info("Re-attaching to EE task %s (%s)", latest["name"], latest["state"])
                self._persist_links(context, latest["name"])
                return self.poll_until_complete(self._stored, context)  # type: ignore[return-value]
            if latest["state"] == "SUCCEEDED":
                self.log.info("EE task %s already SUCCEEDED: not submitting again", latest["name"])
                return self._result(context, latest)
            self._raise_if_too_big(latest)  # split again: the parts' requestIds find their EE tasks
        external_id = self.submit_job(context)
        result = self.poll_until_complete(external_id, context)
        return result if result is not None else self.get_job_result(external_id, context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the trigger fired: needs no ``ee`` at all, the event carries the operation
        (and, when it waited for a part of a split tile, the split plan)."""
        self._set_run(context)
        extra = event.get("extra") or {}
        self._inputs = extra.get("inputs", self._inputs)
        split = extra.get("split")
        if split is not None:
            return self._resume_split(context, event, split)
        if event.get("task_instance_state") == "success":  # ended in the trigger; dag.test() resumes
            result = event["xcoms"]["return_value"]
            self._persist_destination_links(context, result.get("drive_folder_id"))
            return self._with_lineage(result)
        summaries = list(event.get("operations", {}).values())
        status = event.get("status")
        if status == "success" and summaries:
            return self._result(context, summaries[0])
        if status == "timeout":
            name = summaries[0]["name"] if summaries else self._stored_name(context)
            if name:  # do not leave it running outside the pool's bound
                self.hook.cancel_operation(name)
            raise EarthEngineError(f"{event.get('message')}; the EE task was cancelled.")
        if status == "failed" and summaries:
            s = summaries[0]
            if self._splittable(s.get("error")):
                return self._split(context, self._failure(s))
            raise self._task_failed(s, event.get("message", ""))
        raise EarthEngineError(event.get("message") or f"Unexpected trigger event {event!r}")

    def on_kill(self) -> None:
        if self._operation and self._operation.get("state") in ACTIVE_STATES:
            self.log.info("Cancelling EE task %s", self._operation["name"])
            self.hook.cancel_operation(self._operation["name"])

    # ------------------------------------------------------------------ ResumableJobMixin

    def submit_job(self, context: Context) -> dict[str, Any]:
        # The generation follows the stored (failed) operation, so repeated crashes around a
        # resubmission keep asking EE with the same requestId and get the same new operation. The
        # mixin calls submit_job after get_job_status saw that operation, or when none is stored.
        self._set_run(context)  # also when called on its own: the names must be the run's
        prior = self._stored
        generation = int(prior["generation"]) + 1 if prior else 0
        self._admit(context)
        self._hold_for_left_behind(context)
        if self.destination == "drive":
            self._check_drive_storage()
        description = self.task_description(context)
        if self.max_eecu_seconds is not None:
            self._check_budget(context, description)
        return self._start(context, description, generation)

    def _start(self, context: Context, description: str, generation: int) -> dict[str, Any]:
        """Submit the export (of the tile, or of the part being exported) with the requestId of
        ``generation``, or of a later one when EE refuses it as spent; ``{operation, generation,
        request_id}``."""
        self.hook.initialize_ee()
        ee_object = self._ee_object(context)
        self._inputs = self._read_inputs(ee_object)
        # a lower bound of the EE task's creation: its files are never older (a forgotten EE task's
        # harvest has nothing else to tell its files from older ones of the same name)
        submitted_at = datetime.now(UTC).isoformat()
        for _ in range(MAX_GENERATION_STEPS):
            rid = self._request_id(context, generation)
            try:
                op = summarize(
                    self.hook.start_export(
                        ee_object, kind=self.export_type, destination=self.destination, request_id=rid,  # type: ignore[arg-type]
                        workload_tag=self._workload_tag(), **self._export_args(description),
                    )
                )  # fmt: skip
                self.log.info("Submitted EE task %s (%s, requestId %s)", op["name"], description, rid)
                break
            except EarthEngineError as exc:
                if exc.retryable:
                    raise  # an Airflow retry asks again with the same requestId: no duplicate
                earlier = self._refused_submission(context, description, rid, exc)
                if earlier is not None:
                    op = earlier
                    break
                generation += 1  # the requestId is spent (its task failed or EE forgot it): the next one
        else:
            raise EarthEngineRejected(f"Earth Engine refused {MAX_GENERATION_STEPS} requestIds for {description!r}.")
        self._operation = op
        self._persist_links(context, op["name"])
        # stored with the operation: a later try uses it only for the same tile and arguments
        return {
            "operation": op["name"], "generation": generation, "request_id": rid, "inputs": self._inputs,
            "tile_id": self.tile_id, "fingerprint": self._fingerprint(),
            "submitted_at": op.get("create_time") or submitted_at,  # EE's clock where it says
        }  # fmt: skip

    def _read_inputs(self, ee_object: Any) -> list[str]:
        """The full names of the EE assets the export's expression loads (for lineage; never fails
        the export)."""
        try:
            if self.asset is not None:
                return [self.hook.input_asset_name(self.asset)]
            from ee import serializer

            from airflow_provider_gee.utils.lineage import ee_inputs

            return [self.hook.input_asset_name(i) for i in ee_inputs(serializer.encode(ee_object, for_cloud_api=True))]
        except Exception as exc:  # lineage is a by-product: an odd expression must not stop the export
            self.log.debug("Could not read the export's inputs: %s", exc)
            return []

    def _refused_submission(
        self, context: Context, description: str, rid: str, exc: EarthEngineError
    ) -> dict[str, Any] | None:
        """EE refused a submission for good. Either the requestId was used before with another
        body (a retry's ``build`` need not give the same expression; EE may refuse such a repeat),
        and then this task instance's EE task is taken from EE's listing, or the next requestId is
        to be tried (returns ``None``); or the export itself was refused: fail without retries."""
        own = self._own_operations(context, description)
        if own and own[0]["state"] not in ("FAILED", "CANCELLED"):
            self.log.warning(
                "EE refused requestId %s (%s); this task instance's EE task %s (%s) is taken instead",
                rid, exc.message, own[0]["name"], own[0]["state"],
            )  # fmt: skip
            return own[0]
        if REQUEST_ID_REFUSED.search(exc.message):
            self.log.warning("EE refused requestId %s (%s): submitting with the next one", rid, exc.message)
            return None
        if self._splittable(exc.message):  # e.g. "Request payload size exceeds the limit"
            raise _TooBig({"tile_id": self.tile_id, "operation": None, "error": exc.message, "eecu_seconds": 0})
        raise EarthEngineRejected(f"Earth Engine rejected export {description!r}: {exc.message}") from exc

    def _own_operations(self, context: Context, description: str | None = None) -> list[dict[str, Any]]:
        """This task instance's EE tasks in EE's listing, newest created first: the same description,
        created since its DAG run started (EE lists the caller's recent tasks, in no set order)."""
        description = description or self.task_description(context)
        run_start = getattr(context.get("dag_run"), "start_date", None)
        own = [
            op
            for op in (summarize(o) for o in self.hook.list_operations())
            if op["description"] == description and _created_since(op, run_start)
        ]
        return sorted(own, key=lambda op: op.get("create_time") or "", reverse=True)

    def _check_budget(self, context: Context, description: str) -> None:
        """Fail before submitting once the run's exports have used ``max_eecu_seconds``."""
        dag_run = context.get("dag_run")
        run_start = getattr(dag_run, "start_date", None)
        prefix = f"{sanitize_description(self.dag_id)}."
        token = self._run_token if self.run_scoped_names else ""

        def this_run(text: str) -> bool:  # the token tells this run's EE tasks from other runs' in flight
            return token in text if token else text.startswith(prefix)

        used = [
            float(op["eecu_seconds"])
            for op in (summarize(o) for o in self.hook.list_operations())
            if this_run(op["description"] or "")
            and _created_since(op, run_start)
            and op.get("eecu_seconds") is not None
        ]
        spent, counted = math.fsum(used), len(used)
        budget = float(self.max_eecu_seconds)  # type: ignore[arg-type]
        # reached also when equal but for the last bits (EE's figures are decimals, summed in any order)
        if spent >= budget or math.isclose(spent, budget, rel_tol=1e-9):
            raise EecuBudgetSpent(
                f"EECU budget of run {getattr(dag_run, 'run_id', '?')} spent: {spent:,.1f} of {budget:,.1f} "
                f"EECU-s used by {counted} export(s) of DAG {self.dag_id!r}; not submitting {description!r}. "
                "Raise max_eecu_seconds and clear the failed tiles, or export fewer or smaller tiles."
            )
        self.log.info("EECU budget: %.1f of %.1f EECU-s used by %d export(s) of this run", spent, budget, counted)

    def _check_drive_storage(self) -> None:
        """Fail before submitting when the identity has no Drive storage of its own.

        EE writes a Drive export as the caller, and Google gives service accounts no Drive storage
        (since 2025), so their Drive exports would fail in EE after queueing. Checked once per
        connection and process (Drive ``about``), as the answer does not change during a run.
        """
        from googleapiclient.errors import HttpError

        drive = self.drive_hook
        key = (self.gcp_conn_id, str(self.impersonation_chain), drive.drive_api_url)
        if key in _DRIVE_STORAGE_OK:
            return
        try:
            quota = drive.storage_quota()
        except HttpError as exc:
            if exc.resp.status != 403 or b"insufficient" not in (exc.content or b"").lower():
                raise
            raise GeeConfigurationError(
                f"Connection {self.gcp_conn_id!r} ({drive.identity_kind}) has no Drive scope, so EE could not write "
                "the Drive export as it: tokens from the metadata server carry the VM's scopes (Cloud Platform only "
                "by default) and gcloud's own login is not granted Drive. Export to Cloud Storage (destination='gcs', "
                "bucket='...'), or give the connection a person's EE credentials (extra 'ee_credentials', the file "
                "`earthengine authenticate` writes) or a login with your own OAuth client "
                "(gcloud auth application-default login --client-id-file=... with the Drive scope)."
            ) from None
        if quota["limit"] == 0:  # none at all (a full Drive may free up as harvests run: EE says so then)
            raise GeeConfigurationError(
                f"Connection {self.gcp_conn_id!r} has no Drive storage (limit 0 bytes): EE writes Drive exports "
                "as the caller, and service accounts have no Drive "
                "storage. Export to Cloud Storage (destination='gcs', bucket='...'), or use a person's credentials "
                "for Drive (extra 'ee_credentials': the file `earthengine authenticate` writes)."
            )
        _DRIVE_STORAGE_OK.add(key)

    def _export_task_ids(self) -> list[str]:
        """The DAG's export tasks (any pool): their EE tasks carry the run's token."""
        dag = self.dag if self.has_dag() else None
        return [t.task_id for t in (dag.tasks if dag else []) if t.task_type == type(self).__name__] or [self.task_id]

    def _left_behind(self, context: Context) -> tuple[int, int, int] | None:
        """``(EE tasks of this run in flight, export task instances of the run holding a slot, this
        one's rank)`` when an export task instance of the run was killed or failed (its EE task may
        run on without it); ``None`` when none was, or Airflow cannot say. A count of such task
        instances comes first (one small query): only then are the run's states and EE's listing
        read, in that order, so that an export that submitted and deferred before the states were
        read has its EE task in the listing.

        The rank is the number of the run's export task instances in the worker ("running": the
        only ones that can be about to submit) whose key (Airflow's ``task_id`` or
        ``task_id_mapindex``) sorts before this one's: exports checking at the same moment see the
        same free room and take it in that order instead of all taking it.
        """
        ti = context["ti"]
        if not (hasattr(ti, "get_ti_count") and hasattr(ti, "get_task_states")):
            return None
        task_ids = self._export_task_ids()
        try:
            left = ti.get_ti_count(
                dag_id=ti.dag_id, task_ids=task_ids, run_ids=[ti.run_id], states=sorted(LEFT_BEHIND_STATES)
            )
            if not left:
                return None
            states = ti.get_task_states(dag_id=ti.dag_id, task_ids=task_ids, run_ids=[ti.run_id])
        except Exception as exc:  # an Airflow without these calls, or dag.test(): no check, as before
            self.log.debug("Could not read the run's export states: %s", exc)
            return None
        run_states = {key: str(state) for key, state in (states or {}).get(ti.run_id, {}).items()}
        holders = sum(state in SLOT_STATES for state in run_states.values())
        map_index = getattr(ti, "map_index", -1)
        me = ti.task_id if map_index is None or map_index < 0 else f"{ti.task_id}_{map_index}"
        rank = sum(key < me for key, state in run_states.items() if state == "running")
        active = sum(
            1
            for op in self.hook.list_operations(500, max_pages=LIST_MAX_PAGES)
            if op.get("metadata", {}).get("state") in ACTIVE_STATES
            and self._run_token in (op.get("metadata", {}).get("description") or "")
        )
        return active, holders, rank

    def _hold_for_left_behind(self, context: Context) -> None:
        """Keep "EE tasks in flight never exceed the pool" after a kill.

        A task process killed while its EE task runs frees its pool slot at once, and its EE task
        runs on until the retry re-attaches. Before submitting, the export counts its run's EE tasks
        in flight (by the run's token) against the run's export task instances that hold a slot
        (itself included): each holder has at most one EE task, so the room left is the holders
        less the EE tasks, and an export ranked ``r`` among the run's exports in the worker (see
        :meth:`_left_behind`) submits only when more than ``r`` is left. Otherwise it waits
        (deferred, holding its slot; or in the worker) for EE tasks to end. Only the run's own EE
        tasks are seen (other runs' and DAGs' are not): a bound for the run's own kills, checked
        only once one of its task instances was killed or failed.
        """
        if not (self.run_scoped_names and self._run_token):
            return
        deadline = time.monotonic() + self.wait_timeout if self.wait_timeout is not None else None
        while (seen := self._left_behind(context)) is not None and seen[0] + seen[2] >= seen[1]:
            active, holders, rank = seen
            self.log.warning(
                "%d EE task(s) of this run are in flight for %d task instance(s) holding the pool's slots (%d of them "
                "ahead of this one): a killed try left its EE task running (its retry re-attaches to it). Waiting for "
                "EE tasks to end before submitting, so that EE tasks in flight stay within the pool",
                active, holders, rank,
            )  # fmt: skip
            if self.deferrable:
                from airflow_provider_gee.triggers.task import GeeQueueTrigger

                self.defer(
                    trigger=GeeQueueTrigger(
                        f"projects/{self.hook.project}", holders - rank, gcp_conn_id=self.gcp_conn_id,
                        impersonation_chain=self.impersonation_chain, poll_interval=self.poll_interval,
                        description_contains=self._run_token, timeout=self.wait_timeout,
                    ),
                    method_name="execute",
                )  # fmt: skip
            if deadline is not None and time.monotonic() > deadline:
                raise EarthEngineError(
                    f"Waited {self.wait_timeout} s for EE tasks a killed try left running; nothing was submitted."
                )
            time.sleep(self.poll_interval)

    def _admit(self, context: Context) -> None:
        """Admission control: defer until EE's queue is below ``max_ee_queue``, then run again."""
        if self.max_ee_queue is None:
            return
        active = self.hook.count_active_operations()
        if active < self.max_ee_queue:
            return
        self.log.info(
            "EE holds %d active tasks for %s (max_ee_queue=%d): waiting", active, self.hook.project, self.max_ee_queue
        )
        from airflow_provider_gee.triggers.task import GeeQueueTrigger

        self.defer(
            trigger=GeeQueueTrigger(
                f"projects/{self.hook.project}", self.max_ee_queue, gcp_conn_id=self.gcp_conn_id,
                impersonation_chain=self.impersonation_chain, poll_interval=self.poll_interval,
                timeout=self.wait_timeout,
            ),
            method_name="execute",
        )  # fmt: skip

    def get_job_status(self, external_id: Any, context: Context) -> str:
        if not self._is_own(external_id, "EE task"):
            self._stored = None  # not this export's: a fresh submission (its own requestId), generation 0
            self._cancel_discarded(external_id.get("operation") if isinstance(external_id, dict) else None)
            return "DISCARDED"
        self._stored = external_id
        self._inputs = external_id.get("inputs", self._inputs)
        try:
            self._operation = summarize(self.hook.get_operation(external_id["operation"]))
        except EarthEngineError as exc:
            if exc.status_code != 404:
                raise
            return self._forgotten_operation(external_id["operation"], context)
        self.log.info("Stored EE task %s is %s", external_id["operation"], self._operation["state"])
        self._raise_if_too_big(self._operation)  # it failed for its size before the split was kept
        if self._operation["state"] in ACTIVE_STATES:
            self._persist_links(context, external_id["operation"])
        elif self._operation["state"] == "SUCCEEDED":  # a retry that finds it done links it too
            url = task_url(self.hook.api_url, self.hook.uses_google, external_id["operation"])
            EarthEngineTaskLink.persist(context, url=url)
        return str(self._operation["state"])

    def _is_own(self, stored: Any, what: str) -> bool:
        """Whether stored state (an EE task, a split plan) is this export's: the same tile and the
        same export arguments. The store is keyed by the map index, and a re-run tiling can put
        another tile there; other arguments (scale, CRS) would cut or write differently."""
        mine = {"tile_id": self.tile_id, "fingerprint": self._fingerprint()}
        if isinstance(stored, dict) and "fingerprint" not in stored and "operation" in stored:
            return True  # kept by a version before fingerprints (an upgrade mid-run): trusted as it was
        theirs = {k: stored.get(k) for k in mine} if isinstance(stored, dict) else {}
        theirs["tile_id"] = None if theirs.get("tile_id") is None else str(theirs["tile_id"])
        if theirs == mine:
            return True
        self.log.warning(
            "Ignoring the stored %s of this task instance: it was kept for tile %r with export fingerprint %r, "
            "this try exports tile %r with %r (a re-run tiling, or changed arguments): starting afresh",
            what, theirs.get("tile_id"), theirs.get("fingerprint"), mine["tile_id"], mine["fingerprint"],
        )  # fmt: skip
        return False

    def _forgotten_operation(self, name: str, context: Context) -> str:
        """EE no longer knows a stored operation (it keeps tasks for a while only): done if the
        export's outputs exist, else submitted again (``FORGOTTEN`` makes the mixin resubmit)."""
        if self._outputs_exist(context):
            self.log.info("EE no longer knows EE task %s; its outputs exist: not submitting again", name)
            self._operation = {
                "name": name, "state": "SUCCEEDED", "description": self.task_description(context),
                "create_time": self._not_before(context, self._stored),
            }  # fmt: skip
            return "SUCCEEDED"
        self.log.warning("EE no longer knows EE task %s and its outputs are missing: submitting again", name)
        return "FORGOTTEN"

    def _outputs_exist(self, context: Context) -> bool:
        """Whether the export's destination holds its outputs (the asset; files named as EE names them)."""
        if self.destination == "asset":
            return self.hook.get_asset(self._fill(self.asset_id) or "") is not None
        prefix = self._fill(self.file_name_prefix) or self.task_description(context)
        from airflow_provider_gee.utils.sources import DriveSource, GcsSource

        exts = export_extensions(self._file_format(), self.export_type)
        if self.destination == "gcs":
            return bool(GcsSource(self.gcp_conn_id, self.impersonation_chain, self.bucket or "", prefix, exts).list())
        try:
            folder_id = self.drive_hook.export_folder(self.folder, prefix, exts)
        except GeeConfigurationError:  # no folder of that name: nothing was written
            return False
        return bool(DriveSource(self.gcp_conn_id, self.impersonation_chain, folder_id, prefix, exts).list())

    def is_job_active(self, status: str) -> bool:
        return status in ACTIVE_STATES

    def is_job_succeeded(self, status: str) -> bool:
        return status == "SUCCEEDED"

    # Airflow's mixin declares None, yet returns this method's value when it re-attaches a retry
    # (execute_resumable's reconnect path): a result here ends the task with it
    def poll_until_complete(self, external_id: Any, context: Context) -> dict[str, Any] | None:  # type: ignore[override]
        name = external_id["operation"]
        if self.deferrable:
            from airflow_provider_gee.triggers.task import GeeTaskTrigger

            end_with = None
            if self.end_from_trigger and not self.outlets:
                end_with = self._result_base(context, (self._operation or {}).get("description"))
            self.defer(
                trigger=GeeTaskTrigger(
                    [name], gcp_conn_id=self.gcp_conn_id, impersonation_chain=self.impersonation_chain,
                    poll_interval=self.poll_interval, timeout=self.wait_timeout, cancel_on_kill=True,
                    end_with_result=end_with, event_extra={"inputs": self._inputs} if self._inputs else None,
                ),
                method_name="execute_complete",
            )  # fmt: skip
        op = self._poll(name)
        if op["state"] != "SUCCEEDED":
            self._raise_if_too_big(op)
            raise self._task_failed(op)
        return self._result(context, op)

    def _poll(self, name: str) -> dict[str, Any]:
        """Wait in this process until EE task ``name`` ends (cancelled after ``wait_timeout``)."""
        deadline = None if self.wait_timeout is None else time.monotonic() + self.wait_timeout
        while True:
            op = summarize(self.hook.get_operation(name))
            if op["state"] != (self._operation or {}).get("state"):
                self.log.info("EE task %s: %s", name, op["state"])
            self._operation = op
            if op["state"] in TERMINAL_STATES:
                return op
            if deadline is not None and time.monotonic() > deadline:
                self.hook.cancel_operation(name)
                raise EarthEngineError(f"EE task {name} still running after {self.wait_timeout} s; cancelled it.")
            time.sleep(self.poll_interval)

    def get_job_result(self, external_id: Any, context: Context) -> dict[str, Any]:
        if not self._operation or self._operation.get("name") != external_id["operation"]:
            self._operation = summarize(self.hook.get_operation(external_id["operation"]))
        return self._result(context, self._operation)

    # ------------------------------------------------------------------ adaptive splitting

    def _splittable(self, message: str | None) -> bool:
        """Whether EE's ``message`` says the tile is too big and splitting it is allowed here."""
        from airflow_provider_gee.utils.splitting import is_size_error

        splits = self.split_on_error and self.max_split_depth > 0 and self.tile is not None and self.region is None
        return splits and is_size_error(message)

    def _failure(self, op: dict[str, Any]) -> dict[str, Any]:
        """What is kept of an EE task refused for its size (its cost counts toward the tile's)."""
        return {
            "tile_id": self.tile_id, "operation": op.get("name"), "error": op.get("error") or op.get("state"),
            "eecu_seconds": op.get("eecu_seconds") or 0,
        }  # fmt: skip

    @staticmethod
    def _task_failed(op: dict[str, Any], fallback: str = "", note: str = "") -> EarthEngineTaskFailed:
        """The error for an EE task that did not succeed, with EE's message; one refused for its
        size (not split, or still too big) fails without retries: it would fail the same way."""
        from airflow_provider_gee.utils.splitting import is_size_error

        message = (op.get("error") or fallback or op["state"]) + note
        kind = EarthEngineTooBig if is_size_error(op.get("error")) else EarthEngineTaskFailed
        return kind(message, operation=op.get("name") or "", state=op["state"])

    def _raise_if_too_big(self, op: dict[str, Any]) -> None:
        if op.get("state") == "FAILED" and self._splittable(op.get("error")):
            raise _TooBig(self._failure(op))

    def _lattice(self) -> tuple[float, float, float, float] | None:
        """The export's pixel lattice ``(x0, dx, y0, dy)`` in the CRS the tile is cut in (the grid's,
        lon/lat for other tiles), when the export pins it there; ``None`` otherwise (EE then keeps
        its own lattice for every part alike, and pixels on a cut are exported by both parts)."""
        if self.crs is None or self.tile is None:
            return None
        from pyproj import CRS

        grid = self.tile.get("grid")
        cut_crs = CRS.from_user_input(grid["crs"] if grid and self.tile.get("cell") else "EPSG:4326")
        try:
            if not CRS.from_user_input(self.crs).equals(cut_crs):
                return None
        except Exception:  # EE's own codes (SR-ORG:...) are not pyproj's: no lattice to snap to
            return None
        if self.crs_transform is not None:
            t = [float(v) for v in self.crs_transform]
            return t[2], t[0], t[5], t[4]
        if self.scale is not None and cut_crs.is_projected:  # scale is in metres
            return 0.0, float(self.scale), 0.0, float(self.scale)
        return None

    @contextlib.contextmanager
    def _as_part(self, part: dict[str, Any]) -> Iterator[None]:
        """Export ``part`` (a tile dict from the split) with this operator's settings: its id
        names the description, outputs and requestId, its geometry is the region."""
        whole = self.tile
        self.tile, self._part_suffix = part, part["tile_id"][len(str(whole["tile_id"])) :]  # type: ignore[index]
        try:
            yield
        finally:
            self.tile, self._part_suffix = whole, ""

    def _stored_plan(self, context: Context) -> SplitPlan | None:
        """The split plan kept for this export (same tile and arguments), else ``None``."""
        from airflow_provider_gee.utils.splitting import SplitPlan

        data = TaskState(context).get(SPLIT_KEY)
        if not data:
            return None
        if self._is_own(data, "split plan"):
            return SplitPlan(data)
        for part in data.get("parts", []):  # its parts' EE tasks would write beside this export's
            if part.get("state") != "SUCCEEDED":
                self._cancel_discarded(part.get("operation"))
        return None  # the export starts afresh; a new split replaces the plan

    def _cancel_discarded(self, name: str | None) -> None:
        """Cancel an EE task of stored state this export does not use (another tile's at this map
        index, or other arguments'): this task instance started it, and left running it would write
        beside this export's outputs and outside the pool's bound."""
        if not name:
            return
        try:
            op = summarize(self.hook.get_operation(name))
        except EarthEngineError as exc:
            if exc.status_code == 404:  # EE no longer knows it: nothing runs
                return
            raise
        if op["state"] in ACTIVE_STATES:
            self.log.warning("Cancelling EE task %s of the ignored stored state (%s)", name, op["state"])
            self.hook.cancel_operation(name)

    @staticmethod
    def _not_before(context: Context, stored: dict[str, Any] | None) -> str | None:
        """When an EE task that EE no longer knows was created at the earliest: when it was
        submitted, as stored, else the start of the DAG run. Its harvest takes no older file."""
        if stored and stored.get("submitted_at"):
            return str(stored["submitted_at"])
        start = getattr(context.get("dag_run"), "start_date", None)
        return start.isoformat() if start else None

    def _save_plan(self, context: Context, plan: SplitPlan) -> None:
        TaskState(context).set(SPLIT_KEY, plan.data)

    def _split(self, context: Context, failure: dict[str, Any]) -> dict[str, Any]:
        """The tile was refused for its size: export its quadrants instead."""
        from airflow_provider_gee.utils.splitting import SplitPlan

        try:
            plan = SplitPlan.start(self.tile, failure, self._lattice())  # type: ignore[arg-type]
            plan.data["fingerprint"] = self._fingerprint()  # the plan is used again only by this export
        except GeeConfigurationError as exc:
            raise EarthEngineTooBig(
                f"{failure['error']} ({exc})", operation=failure["operation"] or "", state="FAILED"
            ) from None
        self.log.warning(
            "EE refused tile %s for its size (%s): exporting it as %d parts, one at a time (max_split_depth=%d)",
            self.tile_id, failure["error"], len(plan.parts), self.max_split_depth,
        )  # fmt: skip
        self._save_plan(context, plan)
        return self._run_split(context, plan)

    def _run_split(self, context: Context, plan: SplitPlan) -> dict[str, Any]:
        """Export the plan's parts one after the other, each to its end, then the tile's result.

        Deferrable, each wait defers (with the plan) and :meth:`_resume_split` comes back here;
        the plan is saved before every wait, so a killed task goes on from the part it was at.
        """
        from airflow_provider_gee.utils.splitting import part_tile

        self._inputs = self._inputs or plan.data.get("inputs")
        while (part := plan.current()) is not None:
            tile = part_tile(self.tile, part["tile_id"], self._lattice())  # type: ignore[arg-type]
            with self._as_part(tile):
                op = self._part_operation(context, part)
                if op is None:
                    try:
                        op = self._submit_part(context, plan, part)
                    except _TooBig as exc:  # refused at submission, e.g. its request is too large
                        op = {"name": None, "state": "FAILED", "error": exc.failure["error"], "eecu_seconds": 0}
                if op["state"] not in TERMINAL_STATES:
                    op = self._wait_part(context, plan, op)
                self._record_part(context, plan, part, op, tile)
        return self._split_result(context, plan)

    def _resume_split(self, context: Context, event: dict[str, Any], split: dict[str, Any]) -> dict[str, Any]:
        """The trigger waited for a part: record how it ended and go on with the next."""
        from airflow_provider_gee.utils.splitting import SplitPlan, part_tile

        plan = self._stored_plan(context) or SplitPlan(split)
        part = plan.current()
        summaries = list(event.get("operations", {}).values())
        status = event.get("status")
        if status == "timeout":
            if summaries:
                self.hook.cancel_operation(summaries[0]["name"])
            raise EarthEngineError(f"{event.get('message')}; the EE task was cancelled.")
        if status not in ("success", "failed") or not summaries:
            raise EarthEngineError(event.get("message") or f"Unexpected trigger event {event!r}")
        if part is not None and part["operation"] == summaries[0]["name"]:
            tile = part_tile(self.tile, part["tile_id"], self._lattice())  # type: ignore[arg-type]
            with self._as_part(tile):
                self._record_part(context, plan, part, summaries[0], tile)
        return self._run_split(context, plan)

    def _part_operation(self, context: Context, part: dict[str, Any]) -> dict[str, Any] | None:
        """The part's EE task as EE has it now; ``None`` when one is to be submitted."""
        if part["operation"] is None:
            return None
        try:
            return summarize(self.hook.get_operation(part["operation"]))
        except EarthEngineError as exc:
            if exc.status_code != 404:
                raise
        if self._outputs_exist(context):  # EE forgot it; its outputs show it succeeded
            return {
                "name": part["operation"], "state": "SUCCEEDED", "description": self.task_description(context),
                "create_time": self._not_before(context, part),
            }  # fmt: skip
        self.log.warning("EE no longer knows EE task %s of part %s: submitting again", part["operation"], self.tile_id)
        part.update(operation=None, generation=part["generation"] + 1)
        return None

    def _submit_part(self, context: Context, plan: SplitPlan, part: dict[str, Any]) -> dict[str, Any]:
        """Submit the part (budgets first), keep its EE task in the plan, and return it."""
        whole = plan.data["tile_id"]
        if self.max_tile_eecu_seconds is not None and plan.eecu_seconds() >= self.max_tile_eecu_seconds:
            raise EecuBudgetSpent(
                f"EECU budget of tile {whole} spent: {plan.eecu_seconds():,.1f} of {self.max_tile_eecu_seconds:,.1f} "
                f"EECU-s used by its refused EE tasks and exported parts; not exporting part {self.tile_id}. "
                "Raise max_tile_eecu_seconds and clear the task, or use smaller tiles."
            )
        self._hold_for_left_behind(context)
        description = self.task_description(context)
        if self.max_eecu_seconds is not None:
            self._check_budget(context, description)
        submitted = self._start(context, description, part["generation"])
        part.update(
            operation=submitted["operation"], generation=submitted["generation"], state="PENDING",
            submitted_at=submitted["submitted_at"],
        )  # fmt: skip
        plan.data["inputs"] = self._inputs  # a retry that finds every part done still knows them (lineage)
        self._save_plan(context, plan)
        done = sum(p["state"] == "SUCCEEDED" for p in plan.parts)
        self.log.info("Part %s of tile %s (%d of %d done): EE task %s", self.tile_id, whole, done,
                      len(plan.parts), submitted["operation"])  # fmt: skip
        return self._operation  # type: ignore[return-value]  # _start keeps the submitted operation

    def _wait_part(self, context: Context, plan: SplitPlan, op: dict[str, Any]) -> dict[str, Any]:
        """Wait for the part's EE task: deferred (the plan comes back with the trigger's event), or here."""
        self._operation = op  # on_kill cancels it
        EarthEngineTaskLink.persist(context, url=task_url(self.hook.api_url, self.hook.uses_google, op["name"]))
        if self.deferrable:
            from airflow_provider_gee.triggers.task import GeeTaskTrigger

            self.defer(
                trigger=GeeTaskTrigger(
                    [op["name"]], gcp_conn_id=self.gcp_conn_id, impersonation_chain=self.impersonation_chain,
                    poll_interval=self.poll_interval, timeout=self.wait_timeout, cancel_on_kill=True,
                    event_extra={"split": plan.data, "inputs": self._inputs},
                ),
                method_name="execute_complete",
            )  # fmt: skip
        return self._poll(op["name"])

    def _record_part(
        self, context: Context, plan: SplitPlan, part: dict[str, Any], op: dict[str, Any], tile: dict[str, Any]
    ) -> None:
        """Keep how the part's EE task ended: its result; its quadrants if EE refused it for its
        size (up to ``max_split_depth``); otherwise fail, and the next try exports it again."""
        from airflow_provider_gee.utils.splitting import split_tile

        whole = plan.data["tile_id"]
        if op["state"] == "SUCCEEDED":
            result = export_result(self._result_base(context, op.get("description")), op)
            part.update(state="SUCCEEDED", result={**result, "bbox": tile["bbox"]})
            self.log.info("Part %s of tile %s SUCCEEDED (%s EECU-s)", self.tile_id, whole, op.get("eecu_seconds"))
        elif self._splittable(op.get("error")) and part["depth"] < self.max_split_depth:
            try:
                pieces = split_tile(tile, self._lattice())
            except GeeConfigurationError as exc:
                message = f"{op.get('error')} ({exc})"
                raise EarthEngineTooBig(message, operation=op.get("name") or "", state="FAILED") from None
            plan.replace(part, self._failure(op), pieces)
            self.log.warning("EE refused part %s for its size (%s): splitting it into %d parts",
                             self.tile_id, op.get("error"), len(pieces))  # fmt: skip
        else:
            too_big = self._splittable(op.get("error"))
            if not too_big:  # the next try exports the part again, as a new EE task
                part.update(operation=None, generation=part["generation"] + 1, state=None)
            self._save_plan(context, plan)
            note = (
                f" (part {self.tile_id} of tile {whole}, still too big after splitting {part['depth']} times: "
                "use smaller tiles or raise max_split_depth)"
            )
            raise self._task_failed(op, note=note if too_big else "")
        self._save_plan(context, plan)

    def _split_result(self, context: Context, plan: SplitPlan) -> dict[str, Any]:
        """The split tile's result: the tile's own fields, every part's result and the total cost."""
        from airflow_provider_gee.links.drive import drive_folder_id

        parts = [p["result"] for p in plan.parts]
        uris = [u for p in parts for u in p.get("destination_uris", [])]
        result = {
            **self._result_base(context),
            "operation": plan.failed[0].get("operation"),
            "state": "SUCCEEDED",
            "destination_uris": uris,
            "eecu_seconds": round(plan.eecu_seconds(), 6),
            "create_time": min((p.get("create_time") or "" for p in parts), default=None) or None,
            "split": {"reason": plan.data["reason"], "depth": plan.depth(), "refused": plan.failed},
            "parts": parts,
        }
        if result["destination"] == "drive":
            result["drive_folder_id"] = drive_folder_id(uris)
        self.log.info(
            "Tile %s exported in %d parts (split %d deep): %.1f EECU-s, %d EE task(s) refused for size included",
            self.tile_id, len(parts), plan.depth(), result["eecu_seconds"], len(plan.failed),
        )  # fmt: skip
        self._persist_destination_links(context, result.get("drive_folder_id"))
        return self._with_lineage(result)

    # ------------------------------------------------------------------ helpers

    def _stored_name(self, context: Context) -> str | None:
        stored = TaskState(context).get(self.external_id_key)
        return str(stored["operation"]) if stored and stored.get("operation") else None

    def _ee_object(self, context: Context) -> Any:
        import ee

        if self.asset is not None:
            name = self.hook.input_asset_name(self.asset)
            return ee.Image(name) if self.export_type == "image" else ee.FeatureCollection(name)
        obj = self.build(self.tile, context)  # type: ignore[misc]
        expected = ee.Image if self.export_type == "image" else ee.FeatureCollection
        if not isinstance(obj, expected):
            raise GeeConfigurationError(
                f"build returned {type(obj).__name__}; export_type={self.export_type!r} needs an {expected.__name__}."
            )
        return obj

    def _export_args(self, description: str) -> dict[str, Any]:
        import ee

        args: dict[str, Any] = {"description": description}
        if self.destination == "asset":
            args["assetId"] = self._fill(self.asset_id)
            args["overwrite"] = self.overwrite
        else:
            args["fileNamePrefix"] = self._fill(self.file_name_prefix) or description
            if self.destination == "drive" and self.folder:
                args["folder"] = self.folder
            if self.destination == "gcs":
                args["bucket"] = self.bucket
            if self.file_format:
                args["fileFormat"] = self.file_format
        if self.export_type == "image":
            if self.region is None:
                args["region"] = ee.Geometry(self.tile["geometry"], None, False)  # type: ignore[index]
            elif isinstance(self.region, ee.Geometry):
                args["region"] = self.region
            else:  # bbox, WKT, GeoJSON, a vector file or a table asset: read as tiling reads regions
                import shapely.geometry

                from airflow_provider_gee.utils.tiling import read_region

                geojson = shapely.geometry.mapping(read_region(self.region, hook=self.hook))
                args["region"] = ee.Geometry(geojson, None, False)
            for key, value in (("scale", self.scale), ("crs", self.crs), ("crsTransform", self.crs_transform),
                               ("maxPixels", self.max_pixels)):  # fmt: skip
                if value is not None:
                    args[key] = value
            if self.file_dimensions is not None and self.destination != "asset":
                args["fileDimensions"] = self.file_dimensions
        args.update(self.export_options or {})
        return args

    def _persist_links(self, context: Context, operation: str) -> None:
        EarthEngineTaskLink.persist(context, url=task_url(self.hook.api_url, self.hook.uses_google, operation))
        self._persist_destination_links(context)

    def _persist_destination_links(self, context: Context, drive_folder_id: str | None = None) -> None:
        """The Drive folder and asset links; the one that does not apply is set empty (no link)."""
        drive = self.destination == "drive"
        DriveFolderLink.persist(context, url=drive_folder_url(self.folder, drive_folder_id) if drive else None)
        asset = self.hook.asset_name(self._fill(self.asset_id) or "") if self.destination == "asset" else None
        EarthEngineAssetLink.persist(context, url=asset_url(asset) if asset else None)

    def _result(self, context: Context, op: dict[str, Any]) -> dict[str, Any]:
        """The XCom result: what harvest and merge operators need, nothing more."""
        result = export_result(self._result_base(context, op.get("description")), op)
        # a resumed half sets them again (the folder now by id); only the task link is read back
        self._persist_destination_links(context, result.get("drive_folder_id"))
        return self._with_lineage(result)

    def _with_lineage(self, result: dict[str, Any]) -> dict[str, Any]:
        """Keep what the export read and wrote for OpenLineage; return ``result``."""
        from airflow_provider_gee.utils.lineage import export_output_uris
        from airflow_provider_gee.utils.outlets import ee_asset_uri

        self._lineage = ([ee_asset_uri(n) for n in result.get("inputs", [])], export_output_uris(result))
        return result

    def _result_base(self, context: Context, description: str | None = None) -> dict[str, Any]:
        """The operator's part of the result (:func:`~airflow_provider_gee.utils.operations.export_result`)."""
        description = description or self.task_description(context)
        base: dict[str, Any] = {
            "tile_id": self.tile_id,
            "description": description,
            "export_type": self.export_type,
            "destination": self.destination,
        }
        if self._file_format() and self.destination != "asset":  # the harvest takes its extensions only
            base["file_format"] = self._file_format()
        if self._inputs:
            base["inputs"] = self._inputs
        if self.destination == "asset":
            base["asset_id"] = self.hook.asset_name(self._fill(self.asset_id) or "")
        else:
            base["file_name_prefix"] = self._fill(self.file_name_prefix) or description
            if self.destination == "drive":
                base["folder"] = self.folder
            else:
                base["bucket"] = self.bucket
        return base


def _created_since(op: dict[str, Any], start: datetime | None) -> bool:
    """Whether EE created the operation at or after ``start`` (RFC 3339 ``createTime``)."""
    if start is None or not op.get("create_time"):
        return True
    created = datetime.fromisoformat(str(op["create_time"]).replace("Z", "+00:00"))
    return created >= start
