"""Where products go and come from: a local directory or an ``ObjectStoragePath`` URL.

Operators write locally first (verified, atomic), then stream the result to object storage and
check what landed; inputs on object storage are copied to a local work directory before GDAL or
pyogrio read them (they read with the worker's Airflow connections, not GDAL's own credentials).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from airflow.sdk import ObjectStoragePath

from airflow_provider_gee.exceptions import DownloadVerificationError, GeeConfigurationError
from airflow_provider_gee.utils.checksums import md5_file

_CHUNK = 8 << 20
#: our temporary files in a destination: hidden, and never a name EE or a user gives a file
TEMP_PREFIX = ".gee-tmp-"


def exclusive_temp(directory: Path, label: str = "") -> Path:
    """A new, empty file in ``directory`` that nobody else has: created with ``O_EXCL`` (so never an
    existing file, nor a symlink planted at its name), with our hidden prefix."""
    fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=f"{label}.part", dir=directory)
    os.close(fd)
    return Path(name)


def remove_stale_temps(directory: Path, older_than: float = 86400.0) -> list[str]:
    """Remove our temporary files (``.gee-tmp-*``) older than ``older_than`` seconds from
    ``directory``: what a killed process left. Younger ones may belong to a harvest running now."""
    cutoff = time.time() - older_than
    removed = []
    for path in directory.glob(f"{TEMP_PREFIX}*"):
        try:
            if path.is_file() and not path.is_symlink() and path.lstat().st_mtime < cutoff:
                path.unlink()
                removed.append(path.name)
        except FileNotFoundError:  # another harvest removed it meanwhile
            continue
    return removed


def link_new(temp: Path, directory: Path, names: Iterator[str], is_same: Callable[[Path], bool]) -> tuple[str, bool]:
    """Give a verified temporary file the first of ``names`` that no other file holds.

    ``os.link`` fails when the name exists, so a file written meanwhile by another harvest is
    never replaced (check and write are one step). A name that differs from an existing one only
    in letter case is skipped too (it would be the same file on a case-insensitive filesystem).
    Returns ``(name, placed)``: ``placed`` is False when a file of the same content already
    holds a name (a rerun, or a concurrent harvest of the same file), and the temporary file is
    then left to the caller to remove.
    """
    # listed once: a name taken after this look still fails os.link below
    folded = {p.name.casefold(): p for p in directory.iterdir() if not p.name.startswith(TEMP_PREFIX)}
    for name in names:
        target = directory / name
        existing = folded.get(name.casefold())
        if existing is not None:
            if existing.name == name and is_same(existing):
                return name, False
            continue
        try:
            os.link(temp, target)
        except FileExistsError:
            if is_same(target):
                return name, False
            continue
        return name, True
    raise GeeConfigurationError(f"No free name for {temp.name} in {directory}.")


@contextlib.contextmanager
def staging_dir(directory: Path) -> Iterator[Path]:
    """A private directory inside ``directory`` (same filesystem, so ``os.replace`` from it is
    atomic), removed afterwards whatever happens. Products are written there, then moved into
    place: a reader sees the old file or the new one, never half of one, and a symlink planted
    at the target is replaced, never followed."""
    path = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=directory))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


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


def stored_md5(target: ObjectStoragePath) -> str:
    """The md5 of an object as its store reports it (Cloud Storage ``md5Hash``; S3's ETag of a
    single-part upload), else as read back and hashed."""
    info = target.fs.info(target.path)
    if info.get("md5Hash"):
        return base64.b64decode(info["md5Hash"]).hex()
    etag = str(info.get("ETag") or info.get("etag") or "").strip('"')
    if len(etag) == 32 and "-" not in etag:
        return etag
    digest = hashlib.md5(usedforsecurity=False)
    with target.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def upload_verified(
    local_file: Path, target: ObjectStoragePath, *, keep_local: bool = False, exclusive: bool = False
) -> str:
    """Stream a local file to object storage, check by md5 what landed, drop the local copy.

    :param exclusive: create the object only if no object holds its name (fsspec's ``xb`` mode:
        Cloud Storage ``ifGenerationMatch=0``, S3 ``If-None-Match: *``, local ``O_EXCL``); a name
        taken meanwhile raises :class:`FileExistsError` and nothing is replaced. A store whose
        filesystem has no such mode is written with ``wb`` (after the caller's existence check).
    """
    md5 = md5_file(local_file)
    mode = "xb" if exclusive else "wb"
    try:
        dst = target.open(mode)
    except (ValueError, NotImplementedError):  # the store's filesystem knows no exclusive mode
        if mode == "wb":
            raise
        dst = target.open("wb")
    with local_file.open("rb") as src, dst:
        for chunk in iter(lambda: src.read(_CHUNK), b""):
            dst.write(chunk)
    landed = stored_md5(target)
    if landed != md5:
        raise DownloadVerificationError(f"{target} has md5 {landed} after upload, the file {md5}.")
    if not keep_local:
        local_file.unlink()
    return str(target)


def upload_new(local_file: Path, directory: ObjectStoragePath, names: Iterator[str], md5: str) -> tuple[str, str, bool]:
    """Upload a verified file under the first of ``names`` that no other object holds, as
    :func:`link_new` places local files: an object of another content is never replaced, one of
    the same md5 is the file already there. Returns ``(name, location, uploaded)``.

    The upload itself is create-if-absent (:func:`upload_verified` with ``exclusive``), so an
    object written under the same new name by another harvest between the look and the upload
    is not replaced either: the next name is taken.
    """
    for name in names:
        target = directory / name
        if not target.exists():
            try:
                return name, upload_verified(local_file, target, exclusive=True), True
            except FileExistsError:  # another harvest took the name just now
                target.fs.invalidate_cache()
        if stored_md5(target) == md5:
            local_file.unlink(missing_ok=True)
            return name, str(target), False
    raise GeeConfigurationError(f"No free name for {local_file.name} in {directory}.")


def local_input(location: str, workdir: Path) -> str:
    """A local path for ``location``: itself if local, else a copy streamed into ``workdir``.

    The copy's name is a digest of the location and its file name (tiles of different folders
    may share a file name), so a retry or a later run copying the same input replaces its copy
    instead of adding another; it is written aside and moved into place, so a reader of the
    previous copy never sees half a file."""
    if not is_remote(location):
        return location.removeprefix("file://")
    source = ObjectStoragePath(location)
    workdir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(location.encode()).hexdigest()[:16]
    target = workdir / f"{digest}-{source.name}"
    part = exclusive_temp(workdir)
    try:
        with source.open("rb") as src, part.open("wb") as dst:
            for chunk in iter(lambda: src.read(_CHUNK), b""):
                dst.write(chunk)
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)
    return str(target)
