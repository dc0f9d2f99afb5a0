"""DriveHook: the Drive operations harvesting needs that the Google provider's GoogleDriveHook
lacks (paged listing, folder resolution by path, verified streaming download, delete), on top of
that hook and its connection.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from airflow.providers.google.suite.hooks.drive import GoogleDriveHook
from googleapiclient.http import MediaIoBaseDownload

from airflow_provider_gee.exceptions import GeeConfigurationError
from airflow_provider_gee.hooks.connection import GeeConnectionMixin
from airflow_provider_gee.utils.checksums import verify_copy
from airflow_provider_gee.utils.operations import ALL_EXTENSIONS, export_file_pattern
from airflow_provider_gee.utils.storage import exclusive_temp

FOLDER_MIME = "application/vnd.google-apps.folder"
# Connection failures in the middle of a response body.
_DROPPED = (http.client.IncompleteRead, ConnectionError, TimeoutError)
FILE_FIELDS = "id, name, mimeType, parents, size, md5Checksum, createdTime"


def quote(value: str) -> str:
    """A Drive query string literal (``'...'`` with ``\\`` and ``'`` escaped)."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


class DriveHook(GeeConnectionMixin, GoogleDriveHook):
    """Google Drive through the same connection as :class:`EarthEngineHook`.

    Honours the connection's ``drive_api_url`` / ``api_url`` (so it reaches the emulator offline)
    and asks for the Drive scope by default.

    :param gcp_conn_id: the Airflow connection id.
    :param impersonation_chain: optional service account(s) to impersonate.
    """

    def __init__(
        self,
        gcp_conn_id: str = "google_cloud_default",
        impersonation_chain: str | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(gcp_conn_id=gcp_conn_id, impersonation_chain=impersonation_chain, **kwargs)

    def get_client_options(self, api_endpoint_override: str | None = None):
        return super().get_client_options(api_endpoint_override or self.drive_api_url)

    # ------------------------------------------------------------------ listing

    def iter_files(self, q: str, *, page_size: int = 1000, fields: str = FILE_FIELDS) -> Iterator[dict[str, Any]]:
        """Every file matching the query ``q``, following ``nextPageToken``."""
        files = self.get_conn().files()
        token: str | None = None
        while True:
            page = files.list(
                q=q,
                pageSize=page_size,
                pageToken=token,
                fields=f"nextPageToken, files({fields})",
                supportsAllDrives=True,
                includeItemsFromAllDrives=True,
            ).execute(num_retries=self.num_retries)
            yield from page.get("files", [])
            token = page.get("nextPageToken")
            if not token:
                return

    def list_folder(
        self, folder_id: str, *, export_prefix: str | None = None, extensions: tuple[str, ...] = ALL_EXTENSIONS
    ) -> list[dict[str, Any]]:
        """Files (not sub-folders) directly in a folder; with ``export_prefix``, only the files EE
        names for an export with that ``fileNamePrefix`` (``prefix.ext`` and its shards, ``ext``
        one of ``extensions``: its file format's)."""
        q = f"{quote(folder_id)} in parents and trashed = false and mimeType != {quote(FOLDER_MIME)}"
        files = list(self.iter_files(q))
        if export_prefix is None:
            return files
        own = export_file_pattern(export_prefix, extensions)
        return [f for f in files if own.fullmatch(f["name"])]

    def resolve_folder(self, path: str) -> str:
        """The id of a folder given by name or slash-separated path from My Drive.

        A path's first part may be anywhere in Drive (EE creates export folders by name); each
        further part narrows the candidates down. A path that still matches several folders is
        an error that lists their ids.
        """
        parts = [p for p in path.strip("/").split("/") if p]
        if not parts:
            raise GeeConfigurationError("Drive folder path is empty: give a folder name such as 'gee_exports'.")
        candidates: list[dict[str, Any]] = []
        for depth, part in enumerate(parts):
            q = f"mimeType = {quote(FOLDER_MIME)} and name = {quote(part)} and trashed = false"
            found = list(self.iter_files(q, fields="id, name, parents, createdTime"))
            if depth:  # keep only folders inside a candidate of the level above
                above = {c["id"] for c in candidates}
                found = [f for f in found if above.intersection(f.get("parents", []))]
            candidates = found
            if not candidates:
                raise GeeConfigurationError(
                    f"Drive folder {'/'.join(parts[: depth + 1])!r} was not found with connection "
                    f"{self.gcp_conn_id!r}: check the name, or that the folder is shared with the service account."
                )
        if len(candidates) > 1:
            ids = ", ".join(c["id"] for c in candidates)
            raise GeeConfigurationError(
                f"Drive folder {path!r} is ambiguous: {len(candidates)} folders match (ids: {ids}). "
                "Pass folder_id=... or a longer path."
            )
        return candidates[0]["id"]

    def export_folder(self, name: str | None, export_prefix: str, extensions: tuple[str, ...] = ALL_EXTENSIONS) -> str:
        """The id of the folder EE wrote an export into, from the export's ``folder`` argument.

        EE takes ``folder`` as one literal folder name (a ``/`` is part of the name, not a path),
        creates it in My Drive if missing, and picks one when several share the name (ee/batch.py,
        Export.image.toDrive); no folder means My Drive itself. Of several folders of that name,
        the one holding this export's files is the one EE wrote into.
        """
        if not name:
            return "root"
        q = f"mimeType = {quote(FOLDER_MIME)} and name = {quote(name)} and trashed = false"
        candidates = [f["id"] for f in self.iter_files(q, fields="id, name, createdTime")]
        if len(candidates) > 1:
            holding = [c for c in candidates if self.list_folder(c, export_prefix=export_prefix, extensions=extensions)]
            candidates = holding or candidates
        if not candidates:
            raise GeeConfigurationError(
                f"No Drive folder named {name!r} is visible to connection {self.gcp_conn_id!r}: EE writes an export "
                "into the folder of that exact name in the Drive of the identity that started it."
            )
        if len(candidates) > 1:
            raise GeeConfigurationError(
                f"{len(candidates)} Drive folders are named {name!r} and hold files of export {export_prefix!r} "
                f"(ids: {', '.join(candidates)}): pass folder_id=... to say which to harvest."
            )
        return candidates[0]

    # ------------------------------------------------------------------ download and delete

    def download_verified(self, file: dict[str, Any], target: Path, *, chunk_size: int = 8 << 20) -> str:
        """Stream a file to ``target`` and return its md5.

        Bytes go to a temporary file of our own next to ``target`` (created exclusively, never a
        file of that name) in chunks (memory independent of size); the size and md5 are checked
        against Drive's metadata; only a verified file is renamed onto ``target`` (atomically). A
        failed check removes the partial file and raises :class:`DownloadVerificationError`.
        """
        target = Path(target)
        part = exclusive_temp(target.parent)
        digest = hashlib.md5(usedforsecurity=False)
        request = self.get_conn().files().get_media(fileId=file["id"], supportsAllDrives=True)
        try:
            with part.open("r+b") as fh:
                writer = _HashingWriter(fh, digest)
                downloader = MediaIoBaseDownload(writer, request, chunksize=chunk_size)
                done = False
                delays = self.retry_policy.delays()
                while not done:
                    try:
                        # googleapiclient retries 429/5xx itself; a connection dropped mid-body
                        # is ours to retry. The downloader only advances after a whole chunk, so
                        # a retry asks for the same byte range again.
                        _, done = downloader.next_chunk(num_retries=self.num_retries)
                    except _DROPPED as exc:
                        delay = next(delays, None)
                        if delay is None:
                            raise
                        self.log.warning(
                            "Download of %r interrupted (%r); resuming in %.1f s", file["name"], exc, delay
                        )
                        time.sleep(delay)
                fh.flush()
                os.fsync(fh.fileno())
            what = f"{file['name']!r} (Drive id {file['id']})"
            verify_copy(
                what, part.stat().st_size, digest.hexdigest(), int(file.get("size") or 0), file.get("md5Checksum")
            )
            md5 = digest.hexdigest()
            os.replace(part, target)
            return md5
        finally:
            part.unlink(missing_ok=True)

    def delete_file(self, file_id: str) -> None:
        """Delete a file for good (frees quota; trashing would not)."""
        self.get_conn().files().delete(fileId=file_id, supportsAllDrives=True).execute(num_retries=self.num_retries)

    def trash_file(self, file_id: str) -> None:
        """Move a file to the trash (where this identity may trash but not delete it)."""
        self.get_conn().files().update(fileId=file_id, body={"trashed": True}, supportsAllDrives=True).execute(
            num_retries=self.num_retries
        )

    @staticmethod
    def refusal(exc: Exception) -> str | None:
        """Drive's reason and message when it refuses this identity a file (a 403 that is not a
        rate limit, e.g. ``insufficientFilePermissions``); ``None`` for any other error."""
        from googleapiclient.errors import HttpError

        if not isinstance(exc, HttpError) or exc.resp.status != 403:
            return None
        try:
            error = json.loads(exc.content)["error"]
            reason = (error.get("errors") or [{}])[0].get("reason", "")
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        return None if "RateLimit" in reason or "rateLimit" in reason else f"{reason}: {error.get('message')}"

    def storage_quota(self) -> dict[str, int | None]:
        """``{"limit": bytes or None (unlimited), "usage": bytes}``."""
        about = self.get_conn().about().get(fields="storageQuota").execute(num_retries=self.num_retries)
        quota = about.get("storageQuota", {})
        return {
            "limit": int(quota["limit"]) if "limit" in quota else None,
            "usage": int(quota.get("usage", 0)),
        }


class _HashingWriter:
    """A write-only file object that also feeds a hash (MediaIoBaseDownload needs ``write``)."""

    def __init__(self, fh: Any, digest: Any) -> None:
        self._fh = fh
        self._digest = digest

    def write(self, data: bytes) -> int:
        self._digest.update(data)
        return self._fh.write(data)
