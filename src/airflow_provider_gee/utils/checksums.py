"""Checks that a copy is complete and intact: one place for the md5 and size comparisons of
harvesting (Drive and Cloud Storage) and of the emulator's Drive."""

from __future__ import annotations

import hashlib
from pathlib import Path

from airflow_provider_gee.exceptions import DownloadVerificationError


def md5_file(path: Path, chunk: int = 1 << 20) -> str:
    """The hex md5 of a file, read in chunks."""
    digest = hashlib.md5()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_copy(what: str, size: int, md5: str, expected_size: int, expected_md5: str | None) -> None:
    """Raise :class:`DownloadVerificationError` unless the copy's size and md5 are the source's."""
    if size != expected_size:
        raise DownloadVerificationError(f"{what}: got {size} bytes, the source reports {expected_size}.")
    if expected_md5 and md5 != expected_md5:
        raise DownloadVerificationError(f"{what}: md5 {md5} differs from the source's {expected_md5}.")
