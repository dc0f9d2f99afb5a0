"""Where an export's files are read from: a Drive folder or a Cloud Storage prefix, listed
(only the files EE names for that export), downloaded, deleted or trashed. The harvest reads and
deletes through them; the export asks them whether a forgotten EE task wrote its files."""

from __future__ import annotations

import base64
import os
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_gee.exceptions import GeeConfigurationError
from airflow_provider_gee.utils.checksums import crc32c_hex
from airflow_provider_gee.utils.operations import ALL_EXTENSIONS, export_file_pattern
from airflow_provider_gee.utils.storage import exclusive_temp

if TYPE_CHECKING:
    from airflow_provider_gee.hooks.drive import DriveHook


@dataclass(frozen=True)
class RemoteFile:
    id: str  # Drive file id, or GCS object name
    name: str  # title (Drive) or object base name (GCS)
    size: int
    md5: str | None  # hex
    created: datetime | None = None  # when the source created it
    crc32c: str | None = None  # hex; Cloud Storage gives composite objects this and no md5


def parse_rfc3339(value: str | None) -> datetime | None:
    """A time as Drive and EE write it (``2026-12-05T00:00:00.123Z``), or ``None``."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


class DriveSource:
    """Drive files through a DriveHook per thread (googleapiclient's HTTP is not thread-safe).

    With a ``prefix``, only the files EE names for that export (its ``extensions``: the file
    format's, :func:`~airflow_provider_gee.utils.operations.export_extensions`)."""

    kind = "drive"

    def __init__(
        self,
        gcp_conn_id: str,
        impersonation_chain: Any,
        folder_id: str,
        prefix: str | None,
        extensions: tuple[str, ...] = ALL_EXTENSIONS,
    ) -> None:
        self.gcp_conn_id, self.impersonation_chain = gcp_conn_id, impersonation_chain
        self.folder_id, self.prefix, self.extensions = folder_id, prefix, extensions
        self._local = threading.local()

    @property
    def hook(self) -> DriveHook:
        if not hasattr(self._local, "hook"):
            # imported here, not at parse time: the Google API client is paid only by harvesting tasks
            from airflow_provider_gee.hooks.drive import DriveHook

            self._local.hook = DriveHook(gcp_conn_id=self.gcp_conn_id, impersonation_chain=self.impersonation_chain)
        return self._local.hook

    def list(self) -> list[RemoteFile]:
        files = self.hook.list_folder(self.folder_id, export_prefix=self.prefix, extensions=self.extensions)
        return [
            RemoteFile(
                f["id"], f["name"], int(f.get("size") or 0), f.get("md5Checksum"), parse_rfc3339(f.get("createdTime"))
            )
            for f in files
        ]

    def download(self, f: RemoteFile, target: Path, chunk_size: int) -> None:
        self.hook.download_verified(
            {"id": f.id, "name": f.name, "size": f.size, "md5Checksum": f.md5}, target, chunk_size=chunk_size
        )

    def delete(self, f: RemoteFile) -> None:
        self.hook.delete_file(f.id)

    def trash(self, f: RemoteFile) -> None:
        self.hook.trash_file(f.id)

    def refusal(self, exc: Exception) -> str | None:
        return self.hook.refusal(exc)

    def where(self) -> str:
        return f"Drive folder {self.folder_id} (export {self.prefix!r})"


class GcsSource:
    """Objects under a Cloud Storage prefix, through the Google provider's GCSHook on this
    provider's connection (with a prefix, only the objects EE names for that export, as
    :class:`DriveSource`)."""

    kind = "gcs"

    def __init__(
        self,
        gcp_conn_id: str,
        impersonation_chain: Any,
        bucket: str,
        prefix: str | None,
        extensions: tuple[str, ...] = ALL_EXTENSIONS,
    ) -> None:
        from airflow_provider_gee.hooks.gcs import GcsHook

        self.hook = GcsHook(gcp_conn_id=gcp_conn_id, impersonation_chain=impersonation_chain)
        self.bucket, self.prefix, self.extensions = bucket, prefix or "", extensions
        self._lock = threading.Lock()

    def _bucket(self) -> Any:
        with self._lock:
            return self.hook.get_conn().bucket(self.bucket)

    def list(self) -> list[RemoteFile]:
        own = export_file_pattern(self.prefix, self.extensions) if self.prefix else None
        out = []
        for blob in self.hook.get_conn().list_blobs(self.bucket, prefix=self.prefix):
            if own is not None and not own.fullmatch(blob.name):
                continue  # another export's object that merely shares the beginning of the name
            md5 = base64.b64decode(blob.md5_hash).hex() if blob.md5_hash else None
            name = blob.name.rsplit("/", 1)[-1]
            crc32c = crc32c_hex(blob.crc32c)
            out.append(RemoteFile(blob.name, name, int(blob.size or 0), md5, blob.time_created, crc32c))
        return out

    def download(self, f: RemoteFile, target: Path, chunk_size: int) -> None:
        part = exclusive_temp(target.parent)
        try:
            blob = self._bucket().blob(f.id, chunk_size=max(256 * 1024, chunk_size // (256 * 1024) * 256 * 1024))
            # checked below on disk, against the md5 or, for composite objects, the crc32c
            blob.download_to_filename(str(part), checksum=None)
            os.replace(part, target)
        finally:
            part.unlink(missing_ok=True)

    def delete(self, f: RemoteFile) -> None:
        self._bucket().blob(f.id).delete()

    def trash(self, f: RemoteFile) -> None:
        raise GeeConfigurationError("Cloud Storage has no trash: use on_undeletable='keep' or 'fail'.")

    @staticmethod
    def refusal(exc: Exception) -> str | None:
        """Cloud Storage's message when it refuses this identity the delete (403)."""
        from google.api_core.exceptions import Forbidden

        return f"403: {exc.message}" if isinstance(exc, Forbidden) else None

    def where(self) -> str:
        return f"gs://{self.bucket}/{self.prefix}"
