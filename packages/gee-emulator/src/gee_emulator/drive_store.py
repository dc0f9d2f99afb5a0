"""The emulated Google Drive: files and folders, their bytes on disk, the storage quota, and the
subset of the ``q`` query language that EE users and the provider send.
"""

from __future__ import annotations

import builtins
import datetime as dt
import hashlib
import random
import re
import secrets
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


def md5_file(path: Path) -> str:
    """The hex md5 Drive reports as ``md5Checksum``, read in 1 MiB blocks."""
    digest = hashlib.md5(usedforsecurity=False)
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


FOLDER_MIME = "application/vnd.google-apps.folder"
ROOT_ID = "0AEmulatorRootFolder"


class DriveError(Exception):
    def __init__(self, status: int, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason


class QuotaExceeded(DriveError):
    def __init__(self, needed: int, free: int) -> None:
        super().__init__(
            403,
            f"The user's Drive storage quota has been exceeded: {needed} bytes needed, {free} bytes free.",
            "storageQuotaExceeded",
        )


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id() -> str:
    return secrets.token_urlsafe(25)[:33]


@dataclass
class DriveFile:
    id: str
    name: str
    mimeType: str
    parents: list[str]
    createdTime: str = field(default_factory=_now)
    size: str | None = None
    md5Checksum: str | None = None
    trashed: bool = False
    # the e-mail of the identity that created it (EE writes Drive exports as the caller); None: anyone
    owner: str | None = None

    def resource(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if v is not None and k != "owner"}
        if self.owner:
            out["owners"] = [{"kind": "drive#user", "emailAddress": self.owner}]
        out["kind"] = "drive#file"
        return out


# ------------------------------------------------------------------------------ q parsing

_STRING = r"'((?:[^'\\]|\\.)*)'"
_CLAUSES = [
    (re.compile(rf"^{_STRING}\s+in\s+parents$", re.I), "in_parents"),
    (re.compile(rf"^(name|mimeType)\s*(=|!=)\s*{_STRING}$"), "compare"),
    (re.compile(rf"^name\s+contains\s+{_STRING}$"), "contains"),
    (re.compile(r"^trashed\s*=\s*(true|false)$", re.I), "trashed"),
]


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def _split_and(q: str) -> list[str]:
    """Split on top-level ``and`` outside quoted strings."""
    parts, buf, quoted, i = [], [], False, 0
    while i < len(q):
        c = q[i]
        if c == "\\" and quoted:
            buf.append(q[i : i + 2])
            i += 2
            continue
        if c == "'":
            quoted = not quoted
        if not quoted and q[i : i + 5].lower() == " and ":
            parts.append("".join(buf).strip())
            buf, i = [], i + 5
            continue
        buf.append(c)
        i += 1
    parts.append("".join(buf).strip())
    return [p for p in parts if p]


def parse_query(q: str) -> list[tuple[str, tuple[str, ...]]]:
    """Clauses of a Drive query; an unsupported clause is an error (never silently ignored, since
    ignoring a clause would return the wrong files)."""
    clauses = []
    for part in _split_and(q or ""):
        for pattern, kind in _CLAUSES:
            m = pattern.match(part)
            if m:
                clauses.append((kind, m.groups()))
                break
        else:
            raise DriveError(400, f"Invalid Value: unsupported query clause {part!r}", "invalid")
    return clauses


def _matches(f: DriveFile, clauses: list[tuple[str, tuple[str, ...]]]) -> bool:
    for kind, groups in clauses:
        if kind == "in_parents":
            parent = _unescape(groups[0])
            parent = ROOT_ID if parent == "root" else parent
            if parent not in f.parents:
                return False
        elif kind == "compare":
            field_name, op, value = groups
            equal = getattr(f, field_name) == _unescape(value)
            if equal != (op == "="):
                return False
        elif kind == "contains":
            if _unescape(groups[0]) not in f.name:
                return False
        elif kind == "trashed" and f.trashed != (groups[0].lower() == "true"):
            return False
    return True


# ------------------------------------------------------------------------------ store


class DriveStore:
    """Thread-safe Drive state. File bytes live in ``blob_dir``.

    :param quota_bytes: storage limit; ``None`` for unlimited.
    :param listing_lag_seconds: a new file shows in ``files.list`` only after a delay drawn
        uniformly from 0 to this (per file, so the parts of one export appear over several
        listings); reading it by id works at once. Drive's search is eventually consistent, by an
        undocumented delay, so this is a switch (0, the default, lists every file at once).
    """

    def __init__(self, blob_dir: Path, quota_bytes: int | None, listing_lag_seconds: float = 0.0) -> None:
        self.blob_dir = blob_dir
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.quota_bytes = quota_bytes
        self.listing_lag_seconds = listing_lag_seconds
        self._listed_from: dict[str, float] = {}  # file id -> time.monotonic() it becomes listable
        self._lag_rng = random.Random(0)
        self.files: dict[str, DriveFile] = {}
        self.lock = threading.RLock()
        self.peak_bytes = 0
        self.reset()

    def reset(self) -> None:
        with self.lock:
            for f in list(self.files.values()):
                self.blob_path(f.id).unlink(missing_ok=True)
            self.files = {ROOT_ID: DriveFile(ROOT_ID, "My Drive", FOLDER_MIME, [])}
            self._listed_from.clear()
            self.peak_bytes = 0

    def blob_path(self, file_id: str) -> Path:
        """Where a file's bytes are kept."""
        return self.blob_dir / file_id

    @property
    def used_bytes(self) -> int:
        with self.lock:
            return sum(int(f.size or 0) for f in self.files.values() if f.mimeType != FOLDER_MIME)

    def used_by(self, owner: str) -> int:
        """Bytes of the files ``owner`` owns."""
        with self.lock:
            return sum(int(f.size or 0) for f in self.files.values() if f.owner == owner and f.mimeType != FOLDER_MIME)

    def get(self, file_id: str) -> DriveFile:
        with self.lock:
            f = self.files.get(ROOT_ID if file_id == "root" else file_id)
        if f is None:
            raise DriveError(404, f"File not found: {file_id}.", "notFound")
        return f

    def list(self, q: str | None) -> list[DriveFile]:
        clauses = parse_query(q or "")
        now = time.monotonic()
        with self.lock:
            found = [
                f
                for f in self.files.values()
                if f.id != ROOT_ID and self._listed_from.get(f.id, 0.0) <= now and _matches(f, clauses)
            ]
        return sorted(found, key=lambda f: (f.createdTime, f.id))

    def create_folder(self, name: str, parent: str = ROOT_ID) -> DriveFile:
        with self.lock:
            parent = ROOT_ID if parent == "root" else parent
            self.get(parent)
            folder = DriveFile(new_id(), name, FOLDER_MIME, [parent])
            self.files[folder.id] = folder
            return folder

    def folder_for_export(self, name: str | None) -> DriveFile:
        """The folder an EE export writes to: the first folder of that name, created if missing."""
        if not name:
            return self.get(ROOT_ID)
        with self.lock:
            for f in sorted(self.files.values(), key=lambda f: f.createdTime):
                if f.mimeType == FOLDER_MIME and f.name == name and not f.trashed and f.id != ROOT_ID:
                    return f
            return self.create_folder(name)

    def add_files(
        self, parent_id: str, sources: builtins.list[tuple[str, Path, str]], owner: str | None = None
    ) -> builtins.list[DriveFile]:
        """Move finished files (name, temp path, mimeType) into the folder, all or none, owned by
        ``owner``: exceeding the quota raises :class:`QuotaExceeded` and adds nothing."""
        sizes = [p.stat().st_size for _, p, _ in sources]
        with self.lock:
            used = self.used_bytes
            if self.quota_bytes is not None and used + sum(sizes) > self.quota_bytes:
                raise QuotaExceeded(sum(sizes), max(0, self.quota_bytes - used))
            added = []
            for (name, path, mime), size in zip(sources, sizes, strict=True):
                f = DriveFile(
                    new_id(), name, mime, [parent_id], size=str(size), md5Checksum=md5_file(path), owner=owner
                )
                shutil.move(str(path), self.blob_path(f.id))
                self.files[f.id] = f
                if self.listing_lag_seconds > 0:
                    self._listed_from[f.id] = time.monotonic() + self._lag_rng.uniform(0, self.listing_lag_seconds)
                added.append(f)
            self.peak_bytes = max(self.peak_bytes, used + sum(sizes))
            return added

    def seed_file(
        self,
        parent_id: str,
        name: str,
        size: int,
        seed: int = 0,
        mime: str = "application/octet-stream",
        owner: str | None = None,
    ) -> DriveFile:
        """A file of ``size`` pseudo-random bytes (for tests and benchmarks), written in chunks."""
        tmp = self.blob_dir / f"seed-{new_id()}"
        rng = random.Random(seed)
        with tmp.open("wb") as fh:
            left = size
            while left > 0:
                n = min(left, 1 << 20)
                fh.write(rng.randbytes(n))
                left -= n
        return self.add_files(parent_id, [(name, tmp, mime)], owner=owner)[0]

    def delete(self, file_id: str, caller: str | None = None) -> None:
        """Delete for good. Only the owner may (Drive API ``files.delete``: "Permanently deletes a
        file owned by the user"); others get Drive's 403 ``insufficientFilePermissions``."""
        with self.lock:
            f = self.get(file_id)
            if f.id == ROOT_ID:
                raise DriveError(403, "The root folder cannot be deleted.", "insufficientPermissions")
            if f.owner and caller and caller != f.owner:
                raise DriveError(
                    403,
                    f"The user does not have sufficient permissions for file {file_id}.",
                    "insufficientFilePermissions",
                )
            children = [c for c in self.files.values() if f.id in c.parents]
            for child in children:
                self.delete(child.id)
            del self.files[f.id]
            self.blob_path(f.id).unlink(missing_ok=True)

    def update(self, file_id: str, changes: dict[str, Any], caller: str | None = None) -> DriveFile:
        """Rename or (un)trash. In My Drive only the owner may trash a file (Drive Help, "Delete
        and restore files"); the emulator has no shared drives, so others get the same 403."""
        with self.lock:
            f = self.get(file_id)
            if "trashed" in changes and f.owner and caller and caller != f.owner:
                raise DriveError(
                    403,
                    f"The user does not have sufficient permissions for file {file_id}.",
                    "insufficientFilePermissions",
                )
            if "name" in changes:
                f.name = str(changes["name"])
            if "trashed" in changes:
                f.trashed = bool(changes["trashed"])
            return f

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"files": [asdict(f) for f in self.files.values()], "peak_bytes": self.peak_bytes}

    def restore(self, data: dict[str, Any]) -> None:
        with self.lock:
            self.files = {d["id"]: DriveFile(**d) for d in data.get("files", [])}
            self.files.setdefault(ROOT_ID, DriveFile(ROOT_ID, "My Drive", FOLDER_MIME, []))
            self.peak_bytes = int(data.get("peak_bytes", 0))
