"""Extra links to Earth Engine: the EE task of an export and the asset it writes."""

from __future__ import annotations

from urllib.parse import quote

from airflow_provider_gee.links.base import UrlLink


class EarthEngineTaskLink(UrlLink):
    name = "Earth Engine task"
    key = "gee_task_link"


class EarthEngineAssetLink(UrlLink):
    name = "Earth Engine asset"
    key = "gee_asset_link"


def task_url(api_url: str, uses_google: bool, operation: str) -> str:
    project = operation.split("/")[1]
    if uses_google:
        return f"https://code.earthengine.google.com/tasks?project={quote(project)}"
    return f"{api_url}/v1/{operation}"  # the emulator's JSON view of the operation


def asset_url(asset_name: str) -> str:
    return f"https://code.earthengine.google.com/?asset={quote(asset_name, safe='/')}"
