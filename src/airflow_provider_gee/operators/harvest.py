"""GeeHarvestOperator (formerly DriveHarvestOperator): download an export's files from Drive or
Cloud Storage, verify them, and delete the remote copies only then.

Every file is streamed in chunks to a temporary name (memory does not grow with file size), its
size and md5 are checked against what Drive/GCS report, it is renamed into place atomically, and
only then is the remote copy deleted. A rerun skips files already harvested (same md5) and never
overwrites a different file of the same name.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import time
import unicodedata
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import Context, ObjectStoragePath

from airflow_provider_gee.exceptions import GeeConfigurationError
from airflow_provider_gee.operators.base import GeeBaseOperator
from airflow_provider_gee.utils.checksums import md5_file, same_content, verify_file
from airflow_provider_gee.utils.lineage import drive_uri, export_output_uris
from airflow_provider_gee.utils.naming import RUN_TOKEN, run_token
from airflow_provider_gee.utils.operations import (
    ALL_EXTENSIONS,
    as_export_result,
    export_extensions,
    export_parts,
)
from airflow_provider_gee.utils.outlets import add_event_extras, destination_uri, redact_url
from airflow_provider_gee.utils.sources import DriveSource, GcsSource, RemoteFile, parse_rfc3339
from airflow_provider_gee.utils.storage import (
    exclusive_temp,
    link_new,
    remove_stale_temps,
    stored_md5,
    target_dir,
    upload_new,
)

if TYPE_CHECKING:
    pass

#: ``prefix-YYYYYYYYYY-XXXXXXXXXX.tif``: one part of a GeoTIFF export EE split by pixel offsets.
SHARD_RE = re.compile(r"^(?P<prefix>.+)-(?P<row>\d{10})-(?P<col>\d{10})(?P<ext>\.[A-Za-z0-9]+)$")
MAX_NAME_BYTES = 200
UNDELETABLE_ACTIONS = ("keep", "trash", "fail")
#: separators, control characters and what Windows forbids in a name (``<>:"|?*``)
_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:<>"|?*]')
#: names Windows reserves for devices, with or without an extension (``CON``, ``nul.tif``, ``COM1``)
_DEVICE = re.compile(r"(?i)(CON|PRN|AUX|NUL|COM[0-9¹²³]|LPT[0-9¹²³])(\..*)?")


def safe_name(title: str) -> str:
    """A file name that stays inside its folder and reads as what it is: no separators, no
    ``..``, no control or format characters (bidirectional overrides, zero-width characters, which
    make ``gpj.tif`` look like ``fit.jpg``), none of ``<>:"|?*``, no Windows device name, at most
    200 bytes (the extension kept)."""
    name = unicodedata.normalize("NFC", title)
    name = "".join("_" if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn") else c for c in name)
    name = _UNSAFE.sub("_", name).strip().strip(".")
    name = re.sub(r"\.{2,}", ".", name) or "unnamed"
    if _DEVICE.fullmatch(name):
        name = f"_{name}"
    if len(name.encode()) > MAX_NAME_BYTES:
        stem, dot, ext = name.rpartition(".")
        ext = f".{ext}" if dot and 0 < len(ext) <= 10 else ""
        stem = name[: len(name) - len(ext)] if ext else name
        digest = hashlib.sha1(title.encode(), usedforsecurity=False).hexdigest()[:8]
        room = MAX_NAME_BYTES - len(ext.encode()) - 9
        stem = stem.encode()[:room].decode(errors="ignore")
        name = f"{stem}-{digest}{ext}"
    return name


def _with_suffix(name: str, suffix: str) -> str:
    stem, dot, ext = name.rpartition(".")
    return f"{stem}~{suffix}.{ext}" if dot and stem else f"{name}~{suffix}"


def _names(name: str, tag: str) -> Iterator[str]:
    """The names a file may take, in order: its own, then ``name~tag``, ``name~tag-2``, ..."""
    yield name
    yield _with_suffix(name, tag)
    for k in range(2, 1000):
        yield _with_suffix(name, f"{tag}-{k}")


class HarvestJournal:
    """What a harvest has copied, kept next to the copies (``.gee-harvest-<source hash>.json``)
    and written before each source delete: a retry after a try that copied and deleted some files
    still lists them in its manifest, and one that finds the source empty knows it is done.

    :param local: the destination directory (for object storage: the staging directory).
    :param remote: the object-storage destination, where the journal then lives.
    :param key: what the journal is of: the export's EE operation, or the source's description
        (Drive folder and prefix, or bucket and prefix).
    """

    def __init__(self, local: Path, remote: ObjectStoragePath | None, key: str) -> None:
        self.name = f".gee-harvest-{hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:16]}.json"
        self.local, self.remote = local, remote
        self.entries: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def load(self) -> dict[str, dict[str, Any]]:
        """The entries of earlier tries, by source id."""
        if self.remote is not None:
            target = self.remote / self.name
            text = target.read_text() if target.exists() else None
        else:
            path = self.local / self.name
            text = path.read_text() if path.is_file() and not path.is_symlink() else None
        self.entries = {e["source_id"]: e for e in json.loads(text)["files"]} if text else {}
        return dict(self.entries)

    def add(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.entries[entry["source_id"]] = dict(entry)
            data = json.dumps({"files": list(self.entries.values())}, indent=1)
            if self.remote is not None:
                (self.remote / self.name).write_text(data)
                return
            temp = exclusive_temp(self.local, "-journal")
            try:
                with temp.open("w") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(temp, self.local / self.name)  # whole or not at all
            finally:
                temp.unlink(missing_ok=True)

    def check_present(self, entries: list[dict[str, Any]]) -> None:
        """Every file an earlier try copied (and may have deleted at the source) is still here."""
        missing = []
        for e in entries:
            path = ObjectStoragePath(e["path"]) if self.remote is not None else Path(e["path"])
            if not path.exists():
                missing.append(e["path"])
        if missing:
            raise GeeConfigurationError(
                f"{len(missing)} file(s) an earlier try harvested are gone from the destination: {missing[:5]}. "
                "Their source copies were deleted after verification; restore them from the destination's backup."
            )


class GeeHarvestOperator(GeeBaseOperator):
    """Download an export's files from Drive or Cloud Storage, verify them (size + md5), then
    delete them at the source.

    :param export_result: a ``GeeExportOperator`` result (map over its ``.output``): gives the
        destination (Drive folder or GCS bucket), the file prefix and the tile id.
    :param folder: Drive folder name or path (templated), resolved through the Drive API; an
        ambiguous name is an error listing the candidates.
    :param folder_id: Drive folder id (templated), instead of ``folder``.
    :param prefix: the export's ``fileNamePrefix`` (templated; default: the export result's): only
        the files EE names for it are taken, ``prefix.ext`` and its parts
        ``prefix-RRRRRRRRRR-CCCCCCCCCC.ext``, never another file that merely starts with it.
        ``{run_token}`` stands for the run's token, which the export adds to its names
        (``run_scoped_names``): ``prefix="ndvi_{run_token}"`` for an export's ``"ndvi"``.
    :param bucket: Cloud Storage bucket (templated): harvest ``gs://bucket/prefix`` instead of Drive.
    :param destination: a local directory or an ``ObjectStoragePath`` URL (``file://``, ``gs://``,
        ``s3://``, ...) (templated).
    :param delete_after: delete each remote file once its copy is verified (default).
    :param max_parallel: files downloaded at once.
    :param chunk_size: bytes per ranged request.
    :param wait_timeout: seconds to wait (with backoff) for the files of a finished export to appear.
    :param settle_seconds: a sharded export's parts may appear over several listings: list again
        after this long until two listings agree.
    :param on_undeletable: what to do when the source refuses to delete a verified file (another
        owner; a shared drive where this identity is not a manager): ``"keep"`` (default: keep it,
        record ``kept (not deletable: ...)`` in the manifest, warn), ``"trash"`` (Drive: move it to
        the trash instead, else keep it) or ``"fail"``.
    :param gcp_conn_id: the Airflow connection id.
    :param impersonation_chain: optional service account(s) to impersonate.

    Each copy is recorded, before its source is deleted, in a journal next to the copies
    (``.gee-harvest-<hash>.json``, one per export, or per source folder and prefix without an
    ``export_result``): a retry's manifest lists the files an earlier try harvested and deleted,
    and a harvest of a folder without ``export_result`` lists what earlier harvests of that folder
    and prefix put into this destination.

    The asset event of each Asset in ``outlets`` carries the tile, the source, the destination,
    and the files and bytes harvested. A harvest mapped over tiles declares no outlet of its own
    (a downstream DAG would run per tile): give the run's product (the mosaic) one instead.
    """

    # export_result is templated so that an upstream ``.output`` resolves inside mapped task groups
    template_fields: Sequence[str] = (
        "folder", "folder_id", "prefix", "bucket", "destination", "export_result", *GeeBaseOperator.template_fields,
    )  # fmt: skip
    ui_color = "#d2e3ec"
    # a mapped harvest is named by the tile of the export it harvests (an export that ended in the
    # triggerer hands over JSON text: Airflow renders the name again after execute decoded it)
    default_map_index_template = "{{ (task.export_result or {}).get('tile_id') or '' }}"

    def __init__(
        self,
        *,
        destination: str,
        export_result: dict[str, Any] | None = None,
        folder: str | None = None,
        folder_id: str | None = None,
        prefix: str | None = None,
        bucket: str | None = None,
        delete_after: bool = True,
        max_parallel: int = 4,
        chunk_size: int = 8 << 20,
        wait_timeout: float = 300.0,
        settle_seconds: float = 2.0,
        on_undeletable: str = "keep",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.destination = destination
        self.export_result = export_result
        self.folder = folder
        self.folder_id = folder_id
        self.prefix = prefix
        self.bucket = bucket
        self.delete_after = delete_after
        self.max_parallel = max_parallel
        self.chunk_size = chunk_size
        self.wait_timeout = wait_timeout
        self.settle_seconds = settle_seconds
        if on_undeletable not in UNDELETABLE_ACTIONS:
            raise GeeConfigurationError(
                f"on_undeletable={on_undeletable!r}: use one of {', '.join(UNDELETABLE_ACTIONS)}."
            )
        self.on_undeletable = on_undeletable
        self._run_start: datetime | None = None

    # ------------------------------------------------------------------ setup

    def _source(self, result: dict[str, Any], part_suffix: str = "") -> DriveSource | GcsSource:
        """Where ``result`` (the export result, or one part of a split tile's) put its files."""
        if result and result.get("destination") not in ("drive", "gcs"):
            raise GeeConfigurationError(
                f"export_result of tile {result.get('tile_id')!r} went to {result.get('destination')!r}: only Drive "
                "and Cloud Storage exports can be harvested (merge asset exports with AssetMergeOperator)."
            )
        if result and result.get("state") not in (None, "SUCCEEDED"):
            raise GeeConfigurationError(f"export_result is {result.get('state')}, not SUCCEEDED: nothing to harvest.")
        # a part's outputs are named as the export names them: its suffix after a name without {tile_id}
        prefix = self.prefix + part_suffix if self.prefix is not None else result.get("file_name_prefix")
        if self.prefix is not None and result.get("file_name_prefix") not in (None, prefix):
            # a templated prefix must not point an export's harvest at other files (another run's)
            raise GeeConfigurationError(
                f"prefix={prefix!r} is not the prefix of the export it harvests ({result['file_name_prefix']!r}): "
                "with export_result a harvest takes that export's files only; drop prefix=..."
            )
        bucket = self.bucket or result.get("bucket")
        # only the extensions of the export's file format: "ndvi.2020.tif" is not export "ndvi"'s
        exts = export_extensions(result.get("file_format"), result.get("export_type")) if result else ALL_EXTENSIONS
        if bucket or result.get("destination") == "gcs":
            if not bucket:
                raise GeeConfigurationError("A Cloud Storage harvest needs bucket=... (or a gcs export_result).")
            return GcsSource(self.gcp_conn_id, self.impersonation_chain, bucket, prefix, exts)
        folder_id = self.folder_id or result.get("drive_folder_id")
        drive = DriveSource(self.gcp_conn_id, self.impersonation_chain, folder_id or "", prefix, exts)
        if folder_id:
            return drive
        if self.folder:  # the user's own folder name or path
            drive.folder_id = drive.hook.resolve_folder(self.folder)
        elif result:  # where EE wrote (its destination URI carried no folder id)
            drive.folder_id = drive.hook.export_folder(result.get("folder"), prefix or "", exts)
        else:
            raise GeeConfigurationError("Say where to harvest from: folder=..., folder_id=... or export_result=....")
        return drive

    # ------------------------------------------------------------------ run

    def execute(self, context: Context) -> dict[str, Any]:
        self.export_result = as_export_result(self.export_result)
        # an export result without its EE task's creation time (EE forgot the task) takes no file
        # older than this run: older files of the same name are another export's
        self._run_start = getattr(context.get("dag_run"), "start_date", None)
        if self.prefix is not None and RUN_TOKEN in self.prefix:  # the export's names carry the run's token
            self.prefix = self.prefix.replace(RUN_TOKEN, run_token(context["ti"].dag_id, context["ti"].run_id))
        local, remote = target_dir(self.destination)  # fails before anything remote is touched
        result = self.export_result or {}
        try:
            if result.get("parts"):  # EE refused the tile for its size: its parts, one by one
                manifest = self._harvest_parts(local, remote, result)
            else:
                manifest = self._harvest(local, remote, result)
        finally:
            if remote is not None:  # the staging directory of an object-store destination
                shutil.rmtree(local, ignore_errors=True)
        keys = ("tile_id", "operation", "source", "destination", "file_count", "bytes")
        add_event_extras(context, self.outlets, {k: manifest[k] for k in keys})
        self._lineage = (self._source_uris(result), [destination_uri(str(self.destination))])
        return manifest

    def _source_uris(self, result: dict[str, Any]) -> list[str]:
        """Where the files came from, named as the export names where it wrote (lineage)."""
        if result:
            return export_output_uris(result)
        if self.bucket:
            return [f"gs://{self.bucket}/{self.prefix or ''}"]
        return [drive_uri(self.folder_id or self.folder, self.prefix)]

    def _harvest_parts(self, local: Path, remote: ObjectStoragePath | None, result: dict[str, Any]) -> dict[str, Any]:
        """Harvest every part of a split tile as an export of its own (own files, own journal), and
        describe them together as the tile's."""
        manifests = []
        for part in export_parts(result):
            suffix = str(part["tile_id"])[len(str(result["tile_id"])) :]
            self.log.info("Tile %s was exported in parts: harvesting part %s", result["tile_id"], part["tile_id"])
            manifests.append(self._harvest(local, remote, part, suffix))
        files = sorted((f for m in manifests for f in m["files"]), key=lambda e: e["name"])
        return {
            "tile_id": result.get("tile_id"),
            "operation": result.get("operation"),
            "source": manifests[0]["source"],
            "destination": str(self.destination),
            "files": files,
            "exports": {k: v for m in manifests for k, v in m["exports"].items()},
            "file_count": len(files),
            "bytes": sum(f["size"] for f in files),
            "parts": [{k: m[k] for k in ("tile_id", "operation", "file_count", "bytes")} for m in manifests],
        }

    def _harvest(
        self, local: Path, remote: ObjectStoragePath | None, result: dict[str, Any], part_suffix: str = ""
    ) -> dict[str, Any]:
        source = self._source(result, part_suffix)
        if remote is None:
            stale = remove_stale_temps(local)
            if stale:
                self.log.info("Removed %d temporary file(s) a killed harvest left: %s", len(stale), stale[:5])
        # one journal per export (its EE operation), else per source folder and prefix
        journal = HarvestJournal(local, remote, result.get("operation") or source.where())
        earlier = journal.load()
        files = self._wait_for_files(source, result, done_before=bool(earlier))
        plan = self._plan_names(files)
        total = sum(f.size for f in files)
        self.log.info(
            "Harvesting %d files (%d bytes) from %s to %s%s", len(files), total, source.where(),
            redact_url(str(self.destination)),
            f"; {len(earlier)} harvested by an earlier try" if earlier else "",
        )  # fmt: skip
        progress = {"files": 0, "bytes": 0}
        lock = threading.Lock()

        def one(f: RemoteFile) -> dict[str, Any]:
            entry = self._harvest_one(source, f, plan[f.id], local, remote, journal)
            with lock:
                progress["files"] += 1
                progress["bytes"] += f.size
                self.log.info(
                    "%d/%d files, %d/%d bytes: %s (%s)", progress["files"], len(files), progress["bytes"], total,
                    entry["name"], entry["action"],
                )  # fmt: skip
            return entry

        with ThreadPoolExecutor(max_workers=max(1, self.max_parallel), thread_name_prefix="harvest") as pool:
            entries = list(pool.map(one, files))
        listed, placed = {f.id for f in files}, {e["path"] for e in entries}
        kept = [e for sid, e in earlier.items() if sid not in listed and e["path"] not in placed]
        journal.check_present(kept)
        return self._manifest(sorted(kept + entries, key=lambda e: e["name"]), source, result)

    def _wait_for_files(
        self, source: DriveSource | GcsSource, result: dict[str, Any], done_before: bool = False
    ) -> list[RemoteFile]:
        """The export's files, once listed completely.

        Files of a finished export may take a moment to show (poll with backoff, bounded), and the
        parts of a sharded export may show over several listings: list again after
        ``settle_seconds`` until two listings agree. Files older than the EE task are an earlier
        export's of the same name, not this one's. With ``done_before`` (an earlier try harvested
        and deleted files of this export), an empty listing means nothing is left to do.
        """
        deadline = time.monotonic() + self.wait_timeout
        delay = 1.0
        previous: list[str] | None = None
        while True:
            files = self._own_files(source.list(), result)
            names = sorted(f.id for f in files)
            sharded = any(SHARD_RE.match(f.name) for f in files)
            nothing_to_wait_for = done_before or not result
            if (files and (not sharded or names == previous)) or (not files and nothing_to_wait_for):
                return sorted(files, key=lambda f: (f.name, f.id))
            wait = self.settle_seconds if files else delay
            if time.monotonic() + wait > deadline:
                what = "no file" if not files else f"the parts still changed ({len(files)} listed)"
                raise GeeConfigurationError(
                    f"Export {result.get('description')!r}: {what} in {source.where()} "
                    f"after {self.wait_timeout} s; raise wait_timeout if its files take longer to appear."
                )
            if files:
                self.log.info("%d parts of a sharded export listed; listing again in %.0f s", len(files), wait)
            else:
                self.log.info("No file in %s yet; checking again in %.0f s", source.where(), wait)
                delay = min(delay * 2, 30.0)
            previous = names
            time.sleep(wait)

    def _own_files(self, files: list[RemoteFile], result: dict[str, Any]) -> list[RemoteFile]:
        """Drop files created before the EE task (an earlier export's, same names); for an export
        result that does not say when (EE forgot the task), before this DAG run started."""
        started = parse_rfc3339(result.get("create_time"))
        if started is None and result:
            started = self._run_start
        if started is None:
            return files
        # EE stamps its task to the microsecond, Drive and Cloud Storage their files to the
        # millisecond: a file made in the task's own millisecond is the task's, not older
        started = started.replace(microsecond=started.microsecond // 1000 * 1000)
        stale = [f for f in files if f.created is not None and f.created < started]
        if stale:
            self.log.warning(
                "Leaving %d file(s) older than the EE task (another export's of the same name): %s",
                len(stale), ", ".join(f.name for f in stale[:5]),
            )  # fmt: skip
        return [f for f in files if f not in stale]

    @staticmethod
    def _plan_names(files: list[RemoteFile]) -> dict[str, str]:
        """Safe, distinct, deterministic local names: the first of equal titles (in any letter
        case) keeps the name, the others get a hash of their remote id appended, checked again."""
        names: dict[str, str] = {}
        taken: set[str] = set()  # case-folded: distinct on a case-insensitive filesystem too
        for f in sorted(files, key=lambda f: (f.name, f.id)):
            own = safe_name(f.name)
            tag = hashlib.sha1(f.id.encode(), usedforsecurity=False).hexdigest()[:8]
            name = next(n for n in _names(own, tag) if n.casefold() not in taken)
            taken.add(name.casefold())
            names[f.id] = name
        return names

    def _harvest_one(
        self,
        source: DriveSource | GcsSource,
        f: RemoteFile,
        name: str,
        local: Path,
        remote: ObjectStoragePath | None,
        journal: HarvestJournal,
    ) -> dict[str, Any]:
        """Copy one file, verified on disk, under a name no other file holds; record it in the
        journal; only then delete the source."""
        tag = (f.md5 or f.crc32c or safe_name(f.id))[:8]
        what = f"{f.name!r} from {source.where()}"

        def same(path: Path) -> bool:
            return same_content(path, f.size, f.md5, f.crc32c)

        found = self._already_there(name, tag, local, remote, f, same)
        if found is not None:
            name, location, md5 = found
            action = "already there"
        else:
            temp = exclusive_temp(local)
            try:
                source.download(f, temp, self.chunk_size)
                md5 = verify_file(what, temp, f.size, f.md5, f.crc32c)  # the bytes on disk, not the stream
                if remote is None:
                    name, placed = link_new(temp, local, _names(name, tag), same)
                    location = str(local / name)
                else:
                    name, location, placed = upload_new(temp, remote, _names(name, tag), md5)
                action = "downloaded" if placed else "already there"
            finally:
                temp.unlink(missing_ok=True)
        entry: dict[str, Any] = {
            "name": name, "source_name": f.name, "path": location, "size": f.size, "md5": md5,
            "source_id": f.id, "action": action,
        }  # fmt: skip
        shard = SHARD_RE.match(f.name)
        if shard:
            entry["shard"] = {"export": shard["prefix"], "row": int(shard["row"]), "col": int(shard["col"])}
        journal.add(entry)  # before the delete: a retry after it still accounts for the file
        if self.delete_after and not (f.md5 or f.crc32c):
            # the copy matched in size only: a size is no proof of content, so the source stays
            self.log.warning("Keeping %s at the source: it reports no md5 or crc32c to verify the copy against", what)
            entry["action"] = f"{action}; kept (no checksum at the source to verify the copy against)"
        elif self.delete_after:
            entry["action"] = self._delete_source(source, f, action)  # only now: the copy is verified
        return entry

    @staticmethod
    def _already_there(
        name: str, tag: str, local: Path, remote: ObjectStoragePath | None, f: RemoteFile, same: Any
    ) -> tuple[str, str, str] | None:
        """A rerun: the name (among this file's names, in order, up to the first free one) that
        already holds exactly its bytes, with its location and md5; else ``None``."""
        for candidate in _names(name, tag):
            if remote is None:
                path = local / candidate
                if not path.exists():
                    return None
                if same(path):
                    return candidate, str(path), f.md5 or md5_file(path)
            else:
                target = remote / candidate
                if not target.exists():
                    return None
                if f.md5 and stored_md5(target) == f.md5:
                    return candidate, str(target), f.md5
        return None

    def _delete_source(self, source: DriveSource | GcsSource, f: RemoteFile, action: str) -> str:
        """Delete the verified file at the source; a refusal keeps it (or trashes it), recorded."""
        try:
            source.delete(f)
            return action
        except Exception as exc:
            refusal = source.refusal(exc)
            if refusal is None:
                raise  # not a refusal (a transient error after the client's retries): retry the task
            if self.on_undeletable == "fail":
                raise GeeConfigurationError(
                    f"{f.name} was copied and verified but may not be deleted at the source ({refusal}); "
                    "on_undeletable='keep' keeps such files and records them."
                ) from exc
            if self.on_undeletable == "trash":
                try:
                    source.trash(f)
                    return f"{action}; trashed (not deletable: {refusal})"
                except Exception as trash_exc:
                    if source.refusal(trash_exc) is None and not isinstance(trash_exc, GeeConfigurationError):
                        raise
            self.log.warning("Keeping %s at the source, verified but not deletable: %s", f.name, refusal)
            return f"{action}; kept (not deletable: {refusal})"

    def _manifest(
        self, entries: list[dict[str, Any]], source: DriveSource | GcsSource, result: dict[str, Any]
    ) -> dict[str, Any]:
        exports: dict[str, list[str]] = {}
        for e in entries:
            key = e.get("shard", {}).get("export") or e["name"].rsplit(".", 1)[0]
            exports.setdefault(key, []).append(e["name"])
        return {
            "tile_id": result.get("tile_id"),
            "operation": result.get("operation"),
            "source": source.where(),
            "destination": str(self.destination),
            "files": entries,
            "exports": {
                k: {"parts": v, "sharded": any("shard" in e for e in entries if e["name"] in v)}
                for k, v in exports.items()
            },
            "file_count": len(entries),
            "bytes": sum(e["size"] for e in entries),
        }


class DriveHarvestOperator(GeeHarvestOperator):
    """The first name of :class:`GeeHarvestOperator`, kept for existing DAGs: it harvests Cloud
    Storage exports too, so new DAGs use ``GeeHarvestOperator``."""
