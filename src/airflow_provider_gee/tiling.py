"""Public import path of the tiling functions (``from airflow_provider_gee.tiling import grid_tiles``).

The implementation lives in :mod:`airflow_provider_gee.utils.tiling`; this module only re-exports
its public names so that DAG files written against the documented path keep working.
"""

from airflow_provider_gee.utils.tiling import (
    chunk_frame,
    chunk_points,
    chunk_to_ee_feature_collection,
    ee_table_to_geodataframe,
    grid_tiles,
    read_region,
    tile_to_ee_geometry,
)

__all__ = [
    "chunk_frame",
    "chunk_points",
    "chunk_to_ee_feature_collection",
    "ee_table_to_geodataframe",
    "grid_tiles",
    "read_region",
    "tile_to_ee_geometry",
]
