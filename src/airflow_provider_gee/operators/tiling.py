"""Operators that return tiles (or point chunks) for dynamic task mapping.

``GridTilesOperator(...).output`` (or ``chunk_points`` in a ``@task``) feeds
``GeeExportOperator.partial(...).expand(tile=...)``. Both check the count against the
deployment's ``[core] max_map_length`` so a too-fine grid fails here, by name, instead of as an
obscure error of the scheduler.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.providers.common.compat.sdk import conf
from airflow.sdk import Context

from airflow_provider_gee.exceptions import GeeConfigurationError
from airflow_provider_gee.operators.base import GeeBaseOperator, GeeLocalOperator
from airflow_provider_gee.utils.compact_tiles import compact_tiles

# geopandas, pandas and pyproj (airflow_provider_gee.utils.tiling) are imported where they are used: every
# task process parses its DAG file, so an import here costs ~0.3 CPU-s on every task start of every
# tile (tests/integration/test_import_cost.py keeps it out)


def check_map_length(count: int, what: str) -> None:
    """Fail clearly when ``count`` mapped task instances exceed ``[core] max_map_length``.

    The api-server enforces the limit with its own configuration; keep the setting equal on every
    Airflow component (``AIRFLOW__CORE__MAX_MAP_LENGTH``).
    """
    limit = conf.getint("core", "max_map_length")
    if count > limit:
        raise GeeConfigurationError(
            f"{what} produced {count:,} items, more than [core] max_map_length = {limit:,}, so they cannot be "
            f"mapped over: use larger tiles/chunks, or raise the setting on every Airflow component "
            f"(AIRFLOW__CORE__MAX_MAP_LENGTH={count})."
        )


class GridTilesOperator(GeeBaseOperator):
    """Cover a region with grid tiles and return them (a list of dicts) for ``.expand(tile=...)``.

    :param region: a vector file path, WKT/GeoJSON, a bbox ``[minx, miny, maxx, maxy]`` or an EE
        table asset id (templated). See :func:`airflow_provider_gee.utils.tiling.read_region`.
    :param cell_size: cell edge in ``units`` (templated; use ``render_template_as_native_obj``).
    :param units: ``"degrees"`` or ``"metres"``.
    :param crs: the grid's CRS (metres: a projected CRS, default EPSG:6933).
    :param clip: clip tile geometries to the region.
    :param overlap: grow each tile by this much on every side (grid units).
    :param max_tiles: refuse grids with more tiles (default
        :data:`airflow_provider_gee.utils.tiling.DEFAULT_MAX_TILES`, 100,000).
    :param layer: layer of a multi-layer region file.
    :param region_crs: CRS of region input that carries none.
    :param compact: leave out each tile's ``geometry`` and ``cell`` where they only repeat its
        ``bbox`` (default): every mapped task pulls the whole list, so its size is paid once per
        task instance; this halves it for grids in degrees. The operators of this package expand
        tiles themselves; a task of your own that reads the list calls
        :func:`~airflow_provider_gee.utils.compact_tiles.expand_tile` on each tile.
    :param gcp_conn_id: connection for reading an EE table asset as region.
    :param impersonation_chain: optional service account(s) to impersonate (templated).
    """

    template_fields: Sequence[str] = ("region", "cell_size", "layer", *GeeBaseOperator.template_fields)
    ui_color = "#e8f4e8"

    def __init__(
        self,
        *,
        region: Any,
        cell_size: float,
        units: str = "degrees",
        crs: str | None = None,
        clip: bool = False,
        overlap: float = 0.0,
        max_tiles: int | None = None,
        layer: str | None = None,
        region_crs: str | None = None,
        compact: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.region = region
        self.cell_size = cell_size
        self.units = units
        self.crs = crs
        self.clip = clip
        self.overlap = overlap
        self.max_tiles = max_tiles
        self.layer = layer
        self.region_crs = region_crs
        self.compact = compact

    def execute(self, context: Context) -> list[dict[str, Any]]:
        from airflow_provider_gee.utils.tiling import DEFAULT_MAX_TILES, grid_tiles

        max_tiles = DEFAULT_MAX_TILES if self.max_tiles is None else self.max_tiles
        hook = None
        if isinstance(self.region, str) and self.region.startswith(("projects/", "users/")):
            hook = self.hook
        tiles = grid_tiles(
            self.region, self.cell_size, units=self.units, crs=self.crs, clip=self.clip, overlap=self.overlap,
            max_tiles=max_tiles, layer=self.layer, region_crs=self.region_crs, hook=hook,
        )  # fmt: skip
        check_map_length(len(tiles), f"Task {self.task_id!r}")
        self.log.info("%d tiles, from %s to %s", len(tiles), tiles[0]["tile_id"], tiles[-1]["tile_id"])
        return compact_tiles(tiles) if self.compact else tiles


class PointChunksOperator(GeeLocalOperator):
    """Split a point file into spatial chunks and return them for ``.expand(tile=...)``.

    :param points: path of a point file (templated).
    :param max_points: the most points per chunk.
    :param id_column: column with unique point ids (default: row numbers).
    :param max_extent: largest chunk width/height in degrees.
    :param layer: layer of a multi-layer file.
    :param compact: leave out each chunk's ``geometry`` (its ``cell``'s rectangle), as
        :class:`GridTilesOperator` does (default).
    """

    template_fields: Sequence[str] = ("points", "layer")
    ui_color = "#e8f4e8"

    def __init__(
        self,
        *,
        points: str,
        max_points: int,
        id_column: str | None = None,
        max_extent: float | None = None,
        layer: str | None = None,
        compact: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.points = points
        self.max_points = max_points
        self.id_column = id_column
        self.max_extent = max_extent
        self.layer = layer
        self.compact = compact

    def execute(self, context: Context) -> list[dict[str, Any]]:
        from airflow_provider_gee.utils.tiling import chunk_points

        chunks = chunk_points(
            self.points, self.max_points, id_column=self.id_column, max_extent=self.max_extent, layer=self.layer
        )
        check_map_length(len(chunks), f"Task {self.task_id!r}")
        self.log.info("%d chunks of at most %d points", len(chunks), self.max_points)
        return compact_tiles(chunks) if self.compact else chunks
