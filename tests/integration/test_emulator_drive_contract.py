"""Contract tests: the Google provider's GoogleDriveHook (through DriveHook, which only points it at
the emulator and adds paging and verification) against the emulated Drive over HTTP."""

from __future__ import annotations

import hashlib
import io

import pytest
from googleapiclient.errors import HttpError

from airflow_provider_gee.exceptions import DownloadVerificationError, GeeConfigurationError
from airflow_provider_gee.hooks.drive import DriveHook
from tests.helpers import admin

pytestmark = pytest.mark.integration


@pytest.fixture
def drive(gee_conn: str) -> DriveHook:
    return DriveHook(gcp_conn_id=gee_conn)


def seed(emu, folder: str, name: str, size: int, seed: int = 0) -> dict:
    """A file in the Drive of the connection's identity (the emulator's service account)."""
    owner = emu.service_account_key["client_email"]
    return admin(emu, "drive/files", {"folder": folder, "name": name, "size": size, "seed": seed, "owner": owner})


def test_google_drive_hook_methods_work_against_the_emulator(drive, emulator):
    f = seed(emulator, "exports", "a.tif", 1000)
    folder_id = f["parents"][0]
    # the provider's own GoogleDriveHook methods, unchanged
    assert drive.exists(folder_id=folder_id, file_name="a.tif")
    assert drive.get_file_id(folder_id=folder_id, file_name="a.tif")["id"] == f["id"]
    assert not drive.exists(folder_id=folder_id, file_name="missing.tif")
    buf = io.BytesIO()
    drive.download_file(f["id"], buf, chunk_size=256)  # several ranged requests
    assert hashlib.md5(buf.getvalue()).hexdigest() == f["md5Checksum"]
    assert emulator.stats()["requests"]["drive.files.download"] == 4


def test_listing_pages_past_one_page_and_filters_by_parent_and_trash(drive, emulator):
    for i in range(7):
        seed(emulator, "many", f"f{i}.csv", 10, seed=i)
    seed(emulator, "other", "elsewhere.csv", 10)
    folder_id = drive.resolve_folder("many")
    files = list(drive.iter_files(f"'{folder_id}' in parents and trashed = false", page_size=3))
    assert sorted(f["name"] for f in files) == [f"f{i}.csv" for i in range(7)]
    assert emulator.stats()["requests"]["drive.files.list"] >= 3 + 1
    assert [f["name"] for f in drive.list_folder(folder_id, export_prefix="f3")] == ["f3.csv"]


def test_unknown_query_clause_is_rejected_not_ignored(drive):
    with pytest.raises(HttpError) as err:
        list(drive.iter_files("modifiedTime > '2020-01-01'"))
    assert err.value.resp.status == 400


def test_resolve_folder_reports_missing_and_ambiguous_names(drive, emulator):
    with pytest.raises(GeeConfigurationError, match="'nowhere' was not found"):
        drive.resolve_folder("nowhere")
    conn = drive.get_conn()
    ids = [
        conn.files().create(body={"name": "twin", "mimeType": "application/vnd.google-apps.folder"}).execute()["id"]
        for _ in range(2)
    ]
    with pytest.raises(GeeConfigurationError, match="ambiguous") as err:
        drive.resolve_folder("twin")
    assert all(i in str(err.value) for i in ids)
    child = (
        conn.files()
        .create(body={"name": "inner", "mimeType": "application/vnd.google-apps.folder", "parents": [ids[1]]})
        .execute()
    )
    # a longer path tells the twins apart
    assert drive.resolve_folder("twin/inner") == child["id"]
    with pytest.raises(GeeConfigurationError, match="'twin/nothing' was not found"):
        drive.resolve_folder("twin/nothing")


def test_verified_download_then_delete_frees_quota(drive, emulator, tmp_path):
    f = seed(emulator, "exports", "big.bin", 3 * 1024 * 1024 + 17)
    md5 = drive.download_verified(f, tmp_path / "big.bin", chunk_size=1 << 20)
    assert md5 == f["md5Checksum"]
    assert (tmp_path / "big.bin").stat().st_size == int(f["size"])
    assert drive.storage_quota()["usage"] == int(f["size"])
    drive.delete_file(f["id"])
    assert drive.storage_quota()["usage"] == 0
    assert emulator.stats()["drive_files"] == 0


def test_corrupted_download_is_detected_and_leaves_no_file(drive, emulator, tmp_path):
    f = seed(emulator, "exports", "c.bin", 5000)
    admin(emulator, "faults", {"kind": "download", "mode": "corrupt", "match": "c.bin"})
    with pytest.raises(DownloadVerificationError, match="md5"):
        drive.download_verified(f, tmp_path / "c.bin")
    assert list(tmp_path.iterdir()) == []
    assert emulator.stats()["drive_files"] == 1  # the Drive copy is untouched


def test_cut_download_is_resumed_by_ranged_retries(drive, emulator, tmp_path):
    f = seed(emulator, "exports", "cut.bin", 300_000)
    admin(emulator, "faults", {"kind": "download", "mode": "cut", "match": "cut.bin", "after_bytes": 1000})
    md5 = drive.download_verified(f, tmp_path / "cut.bin", chunk_size=100_000)
    assert md5 == f["md5Checksum"]


@pytest.mark.emulator(service_account_drive_quota_bytes=5000)
def test_about_reports_limit_and_usage(drive, emulator):
    # the caller's own storage: the service account's (an older account with 5000 bytes)
    seed(emulator, "q", "x.bin", 1200)
    admin(emulator, "drive/files", {"folder": "q", "name": "theirs.bin", "size": 700, "owner": "a@example.com"})
    assert drive.storage_quota() == {"limit": 5000, "usage": 1200}
