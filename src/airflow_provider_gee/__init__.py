"""Apache Airflow provider for Google Earth Engine: tiled exports in a bounded pool, deferrable
waits, verified harvesting from Drive and Cloud Storage, and safe asset housekeeping."""

from __future__ import annotations

__version__ = "0.2.0"
