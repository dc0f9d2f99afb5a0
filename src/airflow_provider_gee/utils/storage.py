"""Where products go and come from: a local directory or an ``ObjectStoragePath`` URL.

Operators write locally first (verified, atomic), then stream the result to object storage and
check what landed; inputs on object storage are copied to a local work directory before GDAL or
pyogrio read them (they read with the worker's Airflow connections, not GDAL's own credentials).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from airflow.sdk import ObjectStoragePath

from airflow_provider_gee.exceptions import DownloadVerificationError, GeeConfigurationError

_CHUNK = 8 << 20


def is_remote(location: str | os.PathLike) -> bool:
    text = str(location)
    return "://" in text and not text.startswith("file://")


def target_dir(location: str | os.PathLike, what: str = "destination") -> tuple[Path, ObjectStoragePath | None]:
    """The local directory to write in, and the remote destination if ``location`` is one.

    Fails with a message naming ``location`` when a local directory cannot be created or written.
    """
    text = str(location)
    if is_remote(text):
        return Path(tempfile.mkdtemp(prefix="gee-out-")), ObjectStoragePath(text)
    local = Path(text.removeprefix("file://")).expanduser()
    try:
        local.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GeeConfigurationError(f"{what} {text!r} cannot be created: {exc.strerror}.") from exc
    if not os.access(local, os.W_OK | os.X_OK):
        raise GeeConfigurationError(f"{what} {text!r} is not writable by this worker.")
    return local, None


def upload_verified(local_file: Path, target: ObjectStoragePath, *, keep_local: bool = False) -> str:
    """Stream a local file to object storage, check the size that landed, drop the local copy."""
    with local_file.open("rb") as src, target.open("wb") as dst:
        for chunk in iter(lambda: src.read(_CHUNK), b""):
            dst.write(chunk)
    if target.stat().st_size != local_file.stat().st_size:
        raise DownloadVerificationError(f"{target} holds {target.stat().st_size} bytes after upload.")
    if not keep_local:
        local_file.unlink()
    return str(target)


def local_input(location: str, workdir: Path) -> str:
    """A local path for ``location``: itself if local, else a copy streamed into ``workdir``."""
    if not is_remote(location):
        return location.removeprefix("file://")
    source = ObjectStoragePath(location)
    workdir.mkdir(parents=True, exist_ok=True)
    # a unique name per copy: tiles of different folders may share a file name
    fd, name = tempfile.mkstemp(dir=workdir, suffix=f"-{source.name}")
    os.close(fd)
    target = Path(name)
    with source.open("rb") as src, target.open("wb") as dst:
        for chunk in iter(lambda: src.read(_CHUNK), b""):
            dst.write(chunk)
    return str(target)
