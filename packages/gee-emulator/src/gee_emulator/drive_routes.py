"""Google Drive v3 as EE's Drive exports and the provider's harvest use it: files list, create,
get (media included), delete, update and about."""

from __future__ import annotations

import operator
import re
import time
from typing import TYPE_CHECKING

from gee_emulator.drive_store import FOLDER_MIME, ROOT_ID, DriveError
from gee_emulator.routing import route, send_page

if TYPE_CHECKING:
    from gee_emulator.server import RequestHandler

_DRIVE = r"/drive/v3"


@route("GET", _DRIVE + r"/files", "drive.files.list")
def _drive_list(h: RequestHandler, m: re.Match[str]) -> None:
    found = h.emu.drive.list(h.query.get("q"))
    for key in reversed([k.strip() for k in h.query.get("orderBy", "").split(",") if k.strip()]):
        field, _, direction = key.partition(" ")
        attr = {"name": "name", "createdTime": "createdTime", "modifiedTime": "createdTime"}.get(field)
        if attr is None:
            raise DriveError(400, f"Invalid Value: unsupported orderBy key {field!r}", "invalid")
        found.sort(key=operator.attrgetter(attr), reverse=direction.strip().lower() == "desc")
    files = [f.resource() for f in found]
    send_page(h, files, "files", 100, 1000, kind="drive#fileList")


@route("POST", _DRIVE + r"/files", "drive.files.create")
def _drive_create(h: RequestHandler, m: re.Match[str]) -> None:
    body = h.json_body()
    if body.get("mimeType") != FOLDER_MIME:
        raise DriveError(400, "The emulator creates folders only through files.create.", "invalid")
    parents = body.get("parents") or [ROOT_ID]
    h.send_json(200, h.emu.drive.create_folder(str(body.get("name", "Untitled")), parents[0]).resource())


@route("GET", _DRIVE + r"/files/(?P<id>[^/]+)", "drive.files.get")
def _drive_get(h: RequestHandler, m: re.Match[str]) -> None:
    f = h.emu.drive.get(m["id"])
    if h.query.get("alt") != "media":
        h.send_json(200, f.resource())
        return
    _download(h, f.id, f.name, int(f.size or 0))


def _download(h: RequestHandler, file_id: str, name: str, total: int) -> None:
    start, end, status = 0, total - 1, 200
    rng = h.headers.get("Range")
    if rng:
        mm = re.match(r"bytes=(\d*)-(\d*)$", rng.strip())
        if not mm:
            raise DriveError(416, f"Invalid Range header {rng!r}.", "invalidRange")
        if mm[1]:
            start = int(mm[1])
            end = min(int(mm[2]), total - 1) if mm[2] else total - 1
        else:  # suffix range
            start = max(0, total - int(mm[2]))
        if start > end and total:
            raise DriveError(416, "Requested range not satisfiable.", "requestedRangeNotSatisfiable")
        status = 206
    fault = h.emu.faults.take("download", name)
    length = max(0, end - start + 1)
    h.send_response(status)
    h.send_header("Content-Type", "application/octet-stream")
    h.send_header("Content-Length", str(length))
    if status == 206:
        h.send_header("Content-Range", f"bytes {start}-{end}/{total}")
    h.end_headers()
    sent = 0
    with h.emu.drive.blob_path(file_id).open("rb") as fh:
        fh.seek(start)
        while sent < length:
            chunk = fh.read(min(1 << 20, length - sent))
            if not chunk:
                break
            if fault and fault.mode == "cut" and sent + len(chunk) > fault.after_bytes:
                h.wfile.write(chunk[: max(0, fault.after_bytes - sent)])
                h.wfile.flush()
                h.close_connection = True
                h.connection.shutdown(2)
                return
            if fault and fault.mode == "corrupt" and sent == 0:
                chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
            if fault and fault.mode == "slow":
                time.sleep(len(chunk) / fault.bytes_per_second)
            h.wfile.write(chunk)
            sent += len(chunk)
    with h.emu.ee.lock:
        h.emu.ee.stats.bytes_downloaded += sent


@route("DELETE", _DRIVE + r"/files/(?P<id>[^/]+)", "drive.files.delete")
def _drive_delete(h: RequestHandler, m: re.Match[str]) -> None:
    h.emu.drive.delete(m["id"], caller=h.caller)
    h.send_empty(204)


@route("PATCH", _DRIVE + r"/files/(?P<id>[^/]+)", "drive.files.update")
def _drive_update(h: RequestHandler, m: re.Match[str]) -> None:
    h.send_json(200, h.emu.drive.update(m["id"], h.json_body(), caller=h.caller).resource())


@route("GET", _DRIVE + r"/about", "drive.about")
def _drive_about(h: RequestHandler, m: re.Match[str]) -> None:
    identity = h.identity
    if identity and identity.is_service_account:  # a service account's own (usually no) storage
        used, limit = h.emu.drive.used_by(identity.email), h.emu.config.service_account_drive_quota_bytes
    else:
        used, limit = h.emu.drive.used_bytes, h.emu.drive.quota_bytes
    quota: dict[str, str] = {"usage": str(used), "usageInDrive": str(used)}
    if limit is not None:
        quota["limit"] = str(limit)
    h.send_json(200, {"kind": "drive#about", "storageQuota": quota})
