"""Provider metadata for Airflow's ProvidersManager (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from airflow_provider_gee import __version__


def get_provider_info() -> dict:
    """Provider metadata read by Airflow's ProvidersManager (``airflow providers list``)."""
    return {
        "package-name": "airflow-provider-gee",
        "name": "Google Earth Engine",
        "description": "Run Google Earth Engine exports as bounded, resumable Airflow tasks.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Google Earth Engine",
                "external-doc-url": "https://developers.google.com/earth-engine",
                "tags": ["gcp"],
            }
        ],
        "hooks": [
            {
                "integration-name": "Google Earth Engine",
                "python-modules": [
                    "airflow_provider_gee.hooks.earth_engine",
                    "airflow_provider_gee.hooks.drive",
                    "airflow_provider_gee.hooks.gcs",
                ],
            }
        ],
        "operators": [
            {
                "integration-name": "Google Earth Engine",
                "python-modules": [
                    "airflow_provider_gee.operators.tiling",
                    "airflow_provider_gee.operators.export",
                    "airflow_provider_gee.operators.harvest",
                    "airflow_provider_gee.operators.assets",
                    "airflow_provider_gee.operators.stitch",
                    "airflow_provider_gee.operators.doctor",
                ],
            }
        ],
        "sensors": [
            {"integration-name": "Google Earth Engine", "python-modules": ["airflow_provider_gee.sensors.task"]}
        ],
        "triggers": [
            {"integration-name": "Google Earth Engine", "python-modules": ["airflow_provider_gee.triggers.task"]}
        ],
        "extra-links": [
            "airflow_provider_gee.links.earth_engine.EarthEngineTaskLink",
            "airflow_provider_gee.links.drive.DriveFolderLink",
            "airflow_provider_gee.links.earth_engine.EarthEngineAssetLink",
        ],
    }
