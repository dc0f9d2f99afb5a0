"""Extra links of the provider's operators: the EE task, the Drive folder, the asset.

They are pushed to XCom before the operator defers, so they work while the task waits.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from airflow.providers.google.cloud.links.base import BaseGoogleLink


class _UrlLink(BaseGoogleLink):
    """A link whose whole URL is persisted (``persist(context, url=...)``)."""

    format_str = "{url}"


class EarthEngineTaskLink(_UrlLink):
    name = "Earth Engine task"
    key = "gee_task_link"


class DriveFolderLink(_UrlLink):
    name = "Drive folder"
    key = "gee_drive_folder_link"


class EarthEngineAssetLink(_UrlLink):
    name = "Earth Engine asset"
    key = "gee_asset_link"


def task_url(api_url: str, uses_google: bool, operation: str) -> str:
    project = operation.split("/")[1]
    if uses_google:
        return f"https://code.earthengine.google.com/tasks?project={quote(project)}"
    return f"{api_url}/v1/{operation}"  # the emulator's JSON view of the operation


def drive_folder_url(folder: str | None, folder_id: str | None = None) -> str:
    if folder_id:
        return f"https://drive.google.com/drive/folders/{quote(folder_id)}"
    return f"https://drive.google.com/drive/search?q={quote(folder or '')}"


def asset_url(asset_name: str) -> str:
    return f"https://code.earthengine.google.com/?asset={quote(asset_name, safe='/')}"


def drive_folder_id(destination_uris: list[str] | Any) -> str | None:
    """The Drive folder id in an export's destination URIs (``https://drive.google.com/#folders/ID``)."""
    for uri in destination_uris or []:
        if "#folders/" in uri:
            return uri.rsplit("#folders/", 1)[1].split("?")[0].strip("/") or None
    return None
