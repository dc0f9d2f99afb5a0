"""The export's arguments, checked before anything remote is touched, and the names it gives
outside Airflow: the description, the requestId, the run's token, the EE object and the export's
REST arguments."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from airflow.providers.common.compat.sdk import ResumableJobMixin
from airflow.sdk import Context

from airflow_provider_gee.exceptions import GeeConfigurationError
from airflow_provider_gee.operators.base import GeeBaseOperator, default_deferrable
from airflow_provider_gee.utils.compact_tiles import expand_tile
from airflow_provider_gee.utils.naming import (
    RUN_TOKEN,
    default_workload_tag,
    description_problem,
    export_fingerprint,
    request_id,
    run_token,
    scoped_description,
    scoped_name,
    tile_id_problem,
    workload_tag_problem,
)
from airflow_provider_gee.utils.operations import DEFAULT_WAIT_TIMEOUT, DESTINATIONS, EXPORT_KINDS, rest_file_format
from airflow_provider_gee.utils.task_state import TaskState

# In every module of this package, the hook and triggers (the Google provider's base hook,
# googleapiclient, aiohttp) and geopandas, pandas and pyproj (airflow_provider_gee.utils.tiling) are
# imported where they are used: every task process parses its DAG file, so a module-level import is
# paid on every task start of every tile, also by the resumed half, which needs none of them
# (tests/integration/test_import_cost.py keeps it so).


class ExportConfiguration(ResumableJobMixin, GeeBaseOperator):
    """The arguments of :class:`~airflow_provider_gee.operators.export.GeeExportOperator` (its
    docstring names them), their checks and the names they give."""

    external_id_key = "gee_operation"

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
