"""MosaicOperator and TableStitchOperator: the per-tile results of a mapped harvest put back together.

Both take the mapped harvest's results (``harvest.output``; each lists the files it verified) and
write to a local path or an ``ObjectStoragePath`` URL. See :mod:`airflow_provider_gee.utils.stitch`.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import Context

from airflow_provider_gee.exceptions import GeeConfigurationError
from airflow_provider_gee.operators.base import GeeLocalOperator
from airflow_provider_gee.utils import stitch
from airflow_provider_gee.utils.extras import require_extra
from airflow_provider_gee.utils.outlets import (
    add_event_extras,
    default_outlets,
    destination_uri,
    is_template,
    redact_url,
)
from airflow_provider_gee.utils.storage import is_remote, local_input, target_dir, upload_verified

COG_COMPRESSIONS = ("DEFLATE", "LZW", "ZSTD", "LZMA", "JPEG", "WEBP", "LERC", "LERC_DEFLATE", "LERC_ZSTD", "NONE")


def _local_files(files: list[stitch.TileFile], workdir: Path) -> list[stitch.TileFile]:
    return [stitch.TileFile(local_input(f.path, workdir), f.tile_id) for f in files]


def _input_dirs(files: list[stitch.TileFile]) -> list[str]:
    """The directories the harvests put the files in (each harvest's destination: its output)."""
    return list(dict.fromkeys(destination_uri(f.path.rsplit("/", 1)[0]) for f in files))


def _check_mean_has_cog(overlap: str, cog: Any) -> None:
    if overlap == "mean" and not cog:
        raise GeeConfigurationError(
            "overlap='mean' averages pixels, which a VRT cannot express: set cog=True (or use 'first'/'last')."
        )


class MosaicOperator(GeeLocalOperator):
    """Mosaic harvested GeoTIFF tiles (sharded exports included) into one GDAL VRT and, on request,
    one Cloud Optimized GeoTIFF.

    :param harvest_results: the mapped harvest's results (templated; e.g. ``harvest.output``), one
        result, or a list of GeoTIFF paths.
    :param destination: directory (local or ``ObjectStoragePath`` URL) for ``<name>.vrt`` and
        ``<name>.tif`` (templated).
    :param name: file name stem of the products (templated).
    :param cog: also write a Cloud Optimized GeoTIFF (tiled, with overviews) (templated).
    :param compress: the COG's compression (``DEFLATE``, ``ZSTD``, ``LZW``, ``JPEG``, ``NONE``...).
    :param overlap: where tiles overlap (buffered grids): ``first`` (the first tile in harvest
        order wins), ``last``, or ``mean`` (valid pixels averaged; COG only, the VRT then shows
        ``first``).
    :param target_crs: resample every tile to this CRS (with ``target_resolution``) instead of
        requiring one grid; tiles on different grids are otherwise an error naming them.
    :param target_resolution: pixel size in ``target_crs`` units.
    :param resampling: resampling for ``target_crs`` (rasterio name: ``nearest``, ``bilinear``...).
    :param window_size: the COG is written in squares of this many pixels; memory is about
        window_size² x bands x 24 bytes plus GDAL's cache.
    :param max_pixels: refuse a mosaic larger than this (width x height; default 10^10), e.g. of
        tiles that lie far apart, before anything is written.

    The destination is the task's outlet (an Airflow Asset) unless it is a template or ``outlets``
    are given; each outlet's event carries the mosaic's paths, tiles, files, CRS and bounds.
    """

    template_fields: Sequence[str] = ("harvest_results", "destination", "name", "cog")

    def __init__(
        self,
        *,
        harvest_results: Any,
        destination: str,
        name: str = "mosaic",
        cog: bool = False,
        compress: str = "DEFLATE",
        overlap: str = "first",
        target_crs: str | None = None,
        target_resolution: float | None = None,
        resampling: str = "nearest",
        window_size: int = 2048,
        max_pixels: int = stitch.DEFAULT_MAX_MOSAIC_PIXELS,
        **kwargs: Any,
    ) -> None:
        default_outlets(kwargs, None if is_template(destination) else destination_uri(destination))
        super().__init__(**kwargs)
        if overlap not in stitch.OVERLAP_RULES:
            raise GeeConfigurationError(f"overlap must be one of {', '.join(stitch.OVERLAP_RULES)}, not {overlap!r}.")
        _check_mean_has_cog(overlap, cog)
        if compress.upper() not in COG_COMPRESSIONS:
            raise GeeConfigurationError(f"compress must be one of {', '.join(COG_COMPRESSIONS)}, not {compress!r}.")
        if (target_crs is None) != (target_resolution is None):
            raise GeeConfigurationError("Give target_crs and target_resolution together (or neither).")
        if target_resolution is not None and not target_resolution > 0:
            raise GeeConfigurationError(f"target_resolution must be > 0, got {target_resolution!r}.")
        if window_size < 256:
            raise GeeConfigurationError(f"window_size must be at least 256 pixels, got {window_size}.")
        self.harvest_results = harvest_results
        self.destination = destination
        self.name = name
        self.cog = cog
        self.compress = compress.upper()
        self.overlap = overlap
        self.target_crs = target_crs
        self.target_resolution = target_resolution
        self.resampling = resampling
        self.window_size = window_size
        self.max_pixels = max_pixels

    def execute(self, context: Context) -> dict[str, Any]:
        require_extra("stitch", "rasterio", feature="MosaicOperator")
        _check_mean_has_cog(self.overlap, self.cog)  # again: cog may have been a template
        files = stitch.manifest_files(self.harvest_results, stitch.RASTER_SUFFIXES)
        out_dir, remote = target_dir(self.destination)
        # a local VRT references the copies of remote tiles: they live next to it, as part of the
        # product; for a remote destination everything local is staging, removed at the end (its
        # VRT points at files of the worker, so only its COG is for use elsewhere)
        work = out_dir / f"{self.name}.tiles" if remote is None else Path(tempfile.mkdtemp(prefix="gee-mosaic-in-"))
        try:
            result = self._mosaic(files, out_dir, remote, work)
        finally:
            if remote is not None:
                shutil.rmtree(work, ignore_errors=True)
                shutil.rmtree(out_dir, ignore_errors=True)
        keys = ("vrt", "cog", "tiles", "files", "crs", "bounds", "width", "height", "bands")
        add_event_extras(context, self.outlets, {k: result[k] for k in keys})
        self._lineage = (_input_dirs(files), [destination_uri(str(self.destination))])
        return result

    def _mosaic(self, files: list[stitch.TileFile], out_dir: Path, remote: Any, work: Path) -> dict[str, Any]:
        if remote is not None or any(is_remote(f.path) for f in files):
            self.log.info("Copying %d tiles from object storage to a local work directory", len(files))
            files = _local_files(files, work)
        tiles = stitch.read_raster_tiles(files)
        if self.target_crs and self.target_resolution:  # given together (checked in __init__)
            self.log.info("Resampling %d tiles to %s at %s", len(tiles), self.target_crs, self.target_resolution)
            warped_dir = out_dir / f"{self.name}.warped"
            tiles = stitch.warp_to_grid(tiles, self.target_crs, self.target_resolution, warped_dir, self.resampling)
        else:
            stitch.check_same_grid(tiles)
        vrt_path = out_dir / f"{self.name}.vrt"
        grid = stitch.write_vrt(tiles, vrt_path, "last" if self.overlap == "last" else "first", self.max_pixels)
        tile_count = len({t.tile_id for t in tiles})
        self.log.info(
            "VRT %s: %d files of %d tiles, %d x %d pixels, %d bands of %s, %s, bounds %s",
            vrt_path, len(tiles), tile_count, grid.width, grid.height, grid.count, grid.dtype,
            grid.crs.to_string(), grid.bounds,
        )  # fmt: skip
        result: dict[str, Any] = {
            "vrt": str(vrt_path), "cog": None, "files": len(tiles), "tiles": tile_count,
            "crs": grid.crs.to_string(), "bounds": list(grid.bounds),
            "resolution": [grid.transform.a, -grid.transform.e], "width": grid.width, "height": grid.height,
            "bands": grid.count, "overlap": self.overlap,
        }  # fmt: skip
        if self.cog:
            cog_path = out_dir / f"{self.name}.tif"
            step = max(1, len(list(stitch.grid_windows(grid, self.window_size))) // 10)

            def progress(done: int, total: int) -> None:
                if done % step == 0 or done == total:
                    self.log.info("COG %s: %d/%d windows written", cog_path.name, done, total)

            stitch.write_cog(
                tiles, vrt_path, grid, cog_path, overlap=self.overlap, compress=self.compress,
                window_size=self.window_size, progress=progress,
            )  # fmt: skip
            self.log.info("COG %s: %d bytes (%s)", cog_path, cog_path.stat().st_size, self.compress)
            result["cog"] = str(cog_path)
        if remote is not None:
            # the VRT points at local files, so only a self-contained COG is worth uploading with it
            result["vrt"] = upload_verified(vrt_path, remote / vrt_path.name)
            if result["cog"]:
                result["cog"] = upload_verified(Path(result["cog"]), remote / f"{self.name}.tif")
        return result


class TableStitchOperator(GeeLocalOperator):
    """Concatenate per-chunk tables (CSV with EE's ``.geo`` column, GeoJSON, SHP, zipped SHP,
    GeoPackage) into one GeoPackage or GeoParquet, one chunk in memory at a time.

    :param harvest_results: the mapped harvest's results (templated), one result, or table paths.
    :param output_path: ``.gpkg`` or ``.parquet`` path, local or an ``ObjectStoragePath`` URL (templated).
    :param key: column(s) identifying a feature: repeats (points exported by two chunks) are
        dropped, the first kept (templated). Without a key every row is kept.
    :param tile_column: name of the column that keeps each row's source tile/chunk id.
    :param layer: the GeoPackage layer name.

    The output is the task's outlet (an Airflow Asset) unless it is a template or ``outlets`` are
    given; each outlet's event carries the output's path, tables and rows.
    """

    template_fields: Sequence[str] = ("harvest_results", "output_path", "key")

    def __init__(
        self,
        *,
        harvest_results: Any,
        output_path: str,
        key: str | Sequence[str] | None = None,
        tile_column: str = "tile_id",
        layer: str = "stitched",
        **kwargs: Any,
    ) -> None:
        default_outlets(kwargs, None if is_template(output_path) else destination_uri(output_path))
        super().__init__(**kwargs)
        if not str(output_path).lower().endswith((".gpkg", ".parquet", ".geoparquet")):
            raise GeeConfigurationError(
                f"output_path {output_path!r} must end in .gpkg (GeoPackage) or .parquet (GeoParquet)."
            )
        self.harvest_results = harvest_results
        self.output_path = output_path
        self.key = key
        self.tile_column = tile_column
        self.layer = layer

    def execute(self, context: Context) -> dict[str, Any]:
        if not str(self.output_path).lower().endswith(".gpkg"):
            require_extra("stitch", "pyarrow", feature="TableStitchOperator (GeoParquet output)")
        files = stitch.manifest_files(self.harvest_results, stitch.TABLE_SUFFIXES)
        name = str(self.output_path).rstrip("/").rsplit("/", 1)[-1]
        out_dir, remote = target_dir(str(self.output_path)[: -len(name)].rstrip("/") or ".", "output directory")
        work = Path(tempfile.mkdtemp(prefix="gee-stitch-in-"))
        try:
            result = self._stitch(files, name, out_dir, remote, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
            if remote is not None:
                shutil.rmtree(out_dir, ignore_errors=True)
        add_event_extras(context, self.outlets, result)
        self._lineage = (_input_dirs(files), [destination_uri(str(self.output_path))])
        return result

    def _stitch(
        self, files: list[stitch.TileFile], name: str, out_dir: Path, remote: Any, work: Path
    ) -> dict[str, Any]:
        if any(is_remote(f.path) for f in files):
            files = _local_files(files, work)
        self.log.info(
            "Stitching %d tables into %s (key: %s)", len(files), redact_url(str(self.output_path)), self.key or "none"
        )
        step = max(1, len(files) // 10)

        def progress(done: int, total: int, rows: int) -> None:
            if done % step == 0 or done == total:
                self.log.info("%d/%d tables, %d rows written", done, total, rows)

        summary = stitch.stitch_tables(
            files, out_dir / name, key=self.key, tile_column=self.tile_column, layer=self.layer, progress=progress
        )
        path = str(out_dir / name)
        if remote is not None:
            path = upload_verified(out_dir / name, remote / name)
        self.log.info(
            "%s: %d rows from %d tables (%d duplicates dropped)",
            redact_url(path), summary["rows_written"], len(files), summary["duplicates_dropped"],
        )  # fmt: skip
        return {"output": path, "tables": len(files), **summary}
