"""Checks that a copy is complete and intact: one place for the md5, crc32c and size comparisons of
harvesting (Drive and Cloud Storage) and of uploads to object storage.

Cloud Storage gives a composite object no md5, only a crc32c: where the source has no md5, the
crc32c is what a copy is held against.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from airflow_provider_gee.exceptions import DownloadVerificationError


def md5_file(path: Path, chunk: int = 1 << 20) -> str:
    """The hex md5 of a file, read in chunks."""
    return file_digests(path, chunk)[0]


def crc32c_hex(b64: str | None) -> str | None:
    """A crc32c as Cloud Storage reports it (base64 of 4 big-endian bytes) in hex."""
    return base64.b64decode(b64).hex() if b64 else None


def file_digests(path: Path, chunk: int = 1 << 20, *, crc32c: bool = False) -> tuple[str, str | None]:
    """The hex md5 (and with ``crc32c`` the hex crc32c) of a file, read once, in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    crc = None
    if crc32c:
        import google_crc32c  # with google-cloud-storage; imported only where a crc32c is needed

        crc = google_crc32c.Checksum()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
            if crc is not None:
                crc.update(block)
    return digest.hexdigest(), crc.digest().hex() if crc is not None else None


def verify_copy(what: str, size: int, md5: str, expected_size: int, expected_md5: str | None) -> None:
    """Raise :class:`DownloadVerificationError` unless the copy's size and md5 are the source's."""
    if size != expected_size:
        raise DownloadVerificationError(f"{what}: got {size} bytes, the source reports {expected_size}.")
    if expected_md5 and md5 != expected_md5:
        raise DownloadVerificationError(f"{what}: md5 {md5} differs from the source's {expected_md5}.")


def verify_file(what: str, path: Path, size: int, md5: str | None, crc32c: str | None) -> str:
    """Check the file *on disk* against the source's size and md5, or its crc32c where it has no
    md5; return the file's md5. Raises :class:`DownloadVerificationError`."""
    actual_md5, actual_crc = file_digests(path, crc32c=not md5 and bool(crc32c))
    verify_copy(what, Path(path).stat().st_size, actual_md5, size, md5)
    if not md5 and crc32c and actual_crc != crc32c:
        raise DownloadVerificationError(f"{what}: crc32c {actual_crc} differs from the source's {crc32c}.")
    return actual_md5


def same_content(path: Path, size: int, md5: str | None, crc32c: str | None) -> bool:
    """Whether a file holds exactly the source's bytes (by size and md5, else crc32c; a source
    with neither is never taken as the same)."""
    path = Path(path)
    if not path.is_file() or path.is_symlink() or path.stat().st_size != size or not (md5 or crc32c):
        return False
    actual_md5, actual_crc = file_digests(path, crc32c=not md5)
    return actual_md5 == md5 if md5 else actual_crc == crc32c
