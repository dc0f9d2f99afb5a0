"""GeeExportOperator: the coordinator of the export's parts (configuration, submission, resume,
splitting, results), with Airflow's entry points."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_3_PLUS
from airflow.sdk import Context

from airflow_provider_gee.exceptions import EarthEngineError
from airflow_provider_gee.links.drive import DriveFolderLink
from airflow_provider_gee.links.earth_engine import EarthEngineAssetLink, EarthEngineTaskLink
from airflow_provider_gee.operators.base import GeeBaseOperator
from airflow_provider_gee.operators.export.splitting import ExportSplitting
from airflow_provider_gee.operators.export.submission import TooBig
from airflow_provider_gee.triggers.events import ended_in_trigger, operations_event, queue_event
from airflow_provider_gee.utils.operations import ACTIVE_STATES


class GeeExportOperator(ExportSplitting):
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
    ui_color = "#d6ecd2"
    # a mapped export is named by its tile (or chunk) id in Airflow's UI, not by its map index
    default_map_index_template = "{{ task.tile['tile_id'] if task.tile else '' }}"

    def execute(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        # ``event`` is set when admission control let this task through (GeeQueueTrigger)
        queued = queue_event(event) if event is not None else None
        if queued is not None and queued["status"] == "error":
            raise EarthEngineError(f"Admission control could not read EE's queue: {queued.get('message')}")
        if queued is not None and queued["status"] == "timeout":
            raise EarthEngineError(f"Waited too long to submit: {queued.get('message')}; nothing was submitted.")
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
        except TooBig as exc:
            return self._split(context, exc.failure)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the trigger fired: needs no ``ee`` at all, the event carries the operation
        (and, when it waited for a part of a split tile, the split plan)."""
        self._set_run(context)
        if ended_in_trigger(event):  # dag.test() resumes it; the result is rebuilt from its EE task
            return self._result_ended_in_trigger(context)
        ended = operations_event(event)
        extra = ended.get("extra") or {}
        self._inputs = extra.get("inputs", self._inputs)
        split = extra.get("split")
        if split is not None:
            return self._resume_split(context, ended, split)
        summaries = list(ended["operations"].values())
        status = ended["status"]
        if status == "success" and summaries:
            return self._result(context, summaries[0])
        if status == "timeout":
            name = summaries[0]["name"] if summaries else self._stored_name(context)
            if name:  # do not leave it running outside the pool's bound
                self.hook.cancel_operation(name)
            raise EarthEngineError(f"{ended.get('message')}; the EE task was cancelled.")
        if status == "failed" and summaries:
            s = summaries[0]
            if self._splittable(s.get("error")):
                return self._split(context, self._failure(s))
            raise self._task_failed(s, ended.get("message", ""))
        raise EarthEngineError(ended.get("message") or f"Unexpected trigger event {event!r}")

    def on_kill(self) -> None:
        if self._operation and self._operation.get("state") in ACTIVE_STATES:
            self.log.info("Cancelling EE task %s", self._operation["name"])
            self.hook.cancel_operation(self._operation["name"])
