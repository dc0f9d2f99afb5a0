"""Data-aware scheduling: summarise each NDVI mosaic that ``gee_tiled_image_export`` writes.

Scheduled on the producer's Airflow Asset, so it runs once per new mosaic, without a sensor. The
asset event's extra (written by ``MosaicOperator``) says where the mosaic is; this DAG reads it
and writes ``summary.json`` next to it: the mean and range of NDVI and the share of valid pixels.
"""

from __future__ import annotations

import json
from pathlib import Path

import pendulum
from airflow.sdk import DAG, Asset, task

#: the same Asset the producer declares (gee_tiled_image_export.py)
NDVI_MOSAIC = Asset(name="gee_tiled_ndvi_mosaic")

with DAG(
    dag_id="gee_ndvi_mosaic_summary",
    schedule=[NDVI_MOSAIC],
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["gee", "example"],
) as dag:

    @task
    def summarize(triggering_asset_events=None) -> list[dict]:
        import numpy as np
        import rasterio

        summaries = []
        for event in triggering_asset_events[NDVI_MOSAIC]:
            mosaic = event.extra["cog"] or event.extra["vrt"]
            with rasterio.open(mosaic) as src:
                ndvi = src.read(1, masked=True)
            valid = ndvi.compressed()
            summary = {
                "mosaic": mosaic,
                "tiles": event.extra["tiles"],
                "valid_fraction": round(valid.size / max(ndvi.size, 1), 4),
                "ndvi_mean": round(float(np.mean(valid)), 4) if valid.size else None,
                "ndvi_min": round(float(np.min(valid)), 4) if valid.size else None,
                "ndvi_max": round(float(np.max(valid)), 4) if valid.size else None,
            }
            Path(mosaic).with_name("summary.json").write_text(json.dumps(summary, indent=2))
            summaries.append(summary)
        return summaries

    summarize()
