"""Extra link to the Drive folder an export writes into."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from airflow_provider_gee.links.base import UrlLink


class DriveFolderLink(UrlLink):
    name = "Drive folder"
    key = "gee_drive_folder_link"


def drive_folder_url(folder: str | None, folder_id: str | None = None) -> str:
    if folder_id:
        return f"https://drive.google.com/drive/folders/{quote(folder_id)}"
    return f"https://drive.google.com/drive/search?q={quote(folder or '')}"


def drive_folder_id(destination_uris: list[str] | Any) -> str | None:
    """The Drive folder id in an export's destination URIs (``https://drive.google.com/#folders/ID``)."""
    for uri in destination_uris or []:
        if "#folders/" in uri:
            return uri.rsplit("#folders/", 1)[1].split("?")[0].strip("/") or None
    return None
