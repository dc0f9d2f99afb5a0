"""DriveHarvestOperator against the emulated Drive (and gcp-storage-emulator) with the real clients."""

from __future__ import annotations

import hashlib
import http.client
from pathlib import Path

import pytest

from airflow_provider_gee.exceptions import DownloadVerificationError, GeeConfigurationError
from airflow_provider_gee.hooks.earth_engine import EarthEngineHook
from airflow_provider_gee.operators.harvest import DriveHarvestOperator, RemoteFile, safe_name
from tests.helpers import admin, run_exports

pytestmark = pytest.mark.integration


def files_in(directory: Path) -> list[str]:
    """The names in a destination, but for the harvest's own journal (temporary files count: none
    may be left)."""
    return sorted(p.name for p in directory.iterdir() if not p.name.startswith(".gee-harvest-"))


BERLIN = [13.2134, 52.4152, 13.3019, 52.4873]


def seed(emu, folder: str, name: str, size: int, seed: int = 0) -> dict:
    return admin(emu, "drive/files", {"folder": folder, "name": name, "size": size, "seed": seed})


def md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def harvest(gee_conn: str, destination, **kw):
    return DriveHarvestOperator(task_id="harvest", destination=str(destination), gcp_conn_id=gee_conn, **kw).execute({})


def export_result(hook: EarthEngineHook, **export_args) -> dict:
    """Run one export on the emulator and shape the result as GeeExportOperator returns it."""
    import ee

    hook.initialize_ee()
    kind = export_args.pop("kind", "image")
    destination = export_args.pop("destination", "drive")
    obj = (
        ee.Image.pixelLonLat()
        if kind == "image"
        else ee.FeatureCollection([ee.Feature(ee.Geometry.Point([13.25, 52.45]), {"a": 1})])
    )
    return run_exports(hook, [("r0001c0001", obj, kind, destination, export_args)])[0]


@pytest.mark.emulator(file_dimensions=64)
def test_sharded_export_is_harvested_verified_grouped_and_deleted(gee_conn, emulator, tmp_path):
    hook = EarthEngineHook(gcp_conn_id=gee_conn)
    result = export_result(
        hook, description="tile-a", folder="exports", fileNamePrefix="tile-a", region=BERLIN, scale=60
    )
    other = seed(emulator, "exports", "other-tile.tif", 5000)  # not this export's: must stay
    manifest = DriveHarvestOperator(
        task_id="h", destination=str(tmp_path), export_result=result, gcp_conn_id=gee_conn
    ).execute({})
    assert manifest["file_count"] > 1 and manifest["tile_id"] == "r0001c0001"
    assert manifest["exports"] == {"tile-a": {"parts": [f["name"] for f in manifest["files"]], "sharded": True}}
    for entry in manifest["files"]:
        assert md5(tmp_path / entry["name"]) == entry["md5"] and entry["shard"]["export"] == "tile-a"
    assert files_in(tmp_path) == sorted(f["name"] for f in manifest["files"])
    stats = emulator.stats()
    assert stats["drive_files"] == 1 and stats["drive_bytes"] == int(other["size"])


def test_rerun_after_a_cut_connection_resumes_without_redownloading(gee_conn, emulator, tmp_path):
    files = [seed(emulator, "f", f"part-{i}.bin", 300_000, seed=i) for i in range(3)]
    # the third file's downloads are cut every time, beyond the hook's retries
    admin(
        emulator, "faults", {"kind": "download", "mode": "cut", "match": "part-2.bin", "after_bytes": 1000, "count": 50}
    )
    with pytest.raises((http.client.IncompleteRead, ConnectionError)):
        harvest(gee_conn, tmp_path, folder="f", delete_after=False, max_parallel=1, chunk_size=100_000)
    assert files_in(tmp_path) == ["part-0.bin", "part-1.bin"]  # no partial file
    admin(emulator, "faults", method="DELETE")
    downloads_before = emulator.stats()["requests"]["drive.files.download"]
    manifest = harvest(gee_conn, tmp_path, folder="f", chunk_size=100_000)
    actions = {f["name"]: f["action"] for f in manifest["files"]}
    assert actions == {"part-0.bin": "already there", "part-1.bin": "already there", "part-2.bin": "downloaded"}
    assert emulator.stats()["requests"]["drive.files.download"] - downloads_before == 3  # part-2 only, 3 ranges
    assert {f["md5"] for f in manifest["files"]} == {f["md5Checksum"] for f in files}
    assert emulator.stats()["drive_files"] == 0


def test_corrupted_download_keeps_the_drive_file_and_fails_clearly(gee_conn, emulator, tmp_path):
    seed(emulator, "c", "bad.tif", 4000)
    admin(emulator, "faults", {"kind": "download", "mode": "corrupt", "match": "bad.tif"})
    with pytest.raises(DownloadVerificationError, match=r"'bad.tif' .* md5 .* differs from the source's"):
        harvest(gee_conn, tmp_path, folder="c")
    assert files_in(tmp_path) == []
    assert emulator.stats()["drive_files"] == 1


def test_hostile_and_duplicate_titles_stay_inside_the_destination(gee_conn, emulator, tmp_path):
    dest = tmp_path / "dest"
    hostile = ["../escape.tif", "/etc/passwd", "a\x00b\x1f.tif", "..", "x" * 300 + ".tif", "same.tif", "same.tif"]
    for i, name in enumerate(hostile):
        seed(emulator, "h", name, 100 + i, seed=i)
    manifest = harvest(gee_conn, dest, folder="h")
    names = [f["name"] for f in manifest["files"]]
    assert len(set(names)) == len(hostile)
    for entry in manifest["files"]:
        path = (dest / entry["name"]).resolve()
        assert path.parent == dest.resolve() and path.is_file()
        assert len(entry["name"].encode()) <= 200 and "\x00" not in entry["name"]
    assert files_in(dest) == sorted(names)
    assert not (tmp_path / "escape.tif").exists()
    # the same titles give the same names whatever order the listing returns them in
    remote = [RemoteFile(f["source_id"], f["source_name"], f["size"], f["md5"]) for f in manifest["files"]]
    assert DriveHarvestOperator._plan_names(remote) == DriveHarvestOperator._plan_names(remote[::-1])
    assert safe_name("../escape.tif") == "_escape.tif"


def test_existing_different_file_is_never_overwritten(gee_conn, emulator, tmp_path):
    (tmp_path / "tile.tif").write_bytes(b"my own file")
    f = seed(emulator, "o", "tile.tif", 2000)
    manifest = harvest(gee_conn, tmp_path, folder="o")
    assert (tmp_path / "tile.tif").read_bytes() == b"my own file"
    assert md5(tmp_path / manifest["files"][0]["name"]) == f["md5Checksum"]
    assert manifest["files"][0]["name"] != "tile.tif"


def test_object_storage_destination(gee_conn, emulator, gcs_url):
    from airflow.sdk import ObjectStoragePath

    f = seed(emulator, "m", "tile.csv", 3000)
    manifest = harvest(gee_conn, f"gs://{gee_conn}@landing/run1", folder="m")
    stored = ObjectStoragePath(f"gs://{gee_conn}@landing/run1/tile.csv")
    assert manifest["files"][0]["path"].endswith("landing/run1/tile.csv")
    assert hashlib.md5(stored.read_bytes()).hexdigest() == f["md5Checksum"]
    assert emulator.stats()["drive_files"] == 0


def test_bad_destination_and_source_fail_before_touching_drive(gee_conn, emulator, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(GeeConfigurationError, match="cannot be created"):
        harvest(gee_conn, blocker / "sub", folder="anything")
    with pytest.raises(GeeConfigurationError, match="'missing' was not found"):
        harvest(gee_conn, tmp_path, folder="missing")
    with pytest.raises(GeeConfigurationError, match="only Drive and Cloud Storage exports"):
        harvest(gee_conn, tmp_path, export_result={"destination": "asset", "state": "SUCCEEDED", "tile_id": "t"})
    assert "drive.files.download" not in emulator.stats()["requests"]


def test_cloud_storage_export_is_harvested_with_the_same_guarantees(gee_conn, emulator, gcs_url, tmp_path):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project="p", credentials=AnonymousCredentials())
    client.create_bucket("gee-out")
    emulator.config.gcs_url = gcs_url
    hook = EarthEngineHook(gcp_conn_id=gee_conn)
    result = export_result(hook, kind="table", destination="gcs", description="points", bucket="gee-out",
                           fileNamePrefix="run1/points")  # fmt: skip
    assert result["state"] == "SUCCEEDED"
    manifest = DriveHarvestOperator(task_id="h", destination=str(tmp_path), export_result=result,
                                    gcp_conn_id=gee_conn).execute({})  # fmt: skip
    assert [f["name"] for f in manifest["files"]] == ["points.csv"]
    assert md5(tmp_path / "points.csv") == manifest["files"][0]["md5"]
    assert "system:index" in (tmp_path / "points.csv").read_text()
    assert list(client.list_blobs("gee-out")) == []


def test_prefixes_t1_and_t10_in_one_folder_each_harvest_takes_only_its_own(gee_conn, emulator, tmp_path):
    # EE names an export's files exactly prefix.ext (or its shards): t10.tif is not t1's
    import ee

    hook = EarthEngineHook(gcp_conn_id=gee_conn)
    hook.initialize_ee()
    jobs = [
        (tid, ee.Image.constant(i), "image", "drive",
         {"description": tid, "folder": "shared", "fileNamePrefix": tid, "region": ee.Geometry.Rectangle(BERLIN),
          "scale": 2000})
        for i, tid in enumerate(["t1", "t10"])
    ]  # fmt: skip
    t1, t10 = run_exports(hook, jobs)
    first = harvest(gee_conn, tmp_path / "t1", export_result=t1)
    assert [f["source_name"] for f in first["files"]] == ["t1.tif"]
    assert emulator.stats()["drive_files"] == 1  # t10.tif is still there, not deleted by t1's harvest
    second = harvest(gee_conn, tmp_path / "t10", export_result=t10)
    assert [f["source_name"] for f in second["files"]] == ["t10.tif"]
    assert emulator.stats()["drive_files"] == 0


def test_cloud_storage_prefixes_t1_and_t10_take_only_their_own_objects(gee_conn, emulator, gcs_url, tmp_path):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project="p", credentials=AnonymousCredentials())
    bucket = client.create_bucket("shared-out")
    for name in ("run/t1.csv", "run/t10.csv", "run/t1-extra.csv", "run/t1-0000000000-0000000000.tif"):
        bucket.blob(name).upload_from_string(name)
    manifest = harvest(gee_conn, tmp_path, bucket="shared-out", prefix="run/t1")
    assert sorted(f["source_name"] for f in manifest["files"]) == ["t1-0000000000-0000000000.tif", "t1.csv"]
    assert sorted(b.name for b in client.list_blobs("shared-out")) == ["run/t1-extra.csv", "run/t10.csv"]


def test_a_file_older_than_the_ee_task_is_not_taken(gee_conn, emulator, tmp_path):
    # yesterday's file of the same name (Drive allows duplicates) is another export's
    stale = seed(emulator, "daily", "tile.tif", 500)
    hook = EarthEngineHook(gcp_conn_id=gee_conn)
    result = export_result(hook, description="tile", folder="daily", fileNamePrefix="tile", region=BERLIN, scale=2000)
    manifest = harvest(gee_conn, tmp_path, export_result=result)
    assert [f["source_name"] for f in manifest["files"]] == ["tile.tif"]
    assert manifest["files"][0]["source_id"] != stale["id"]
    drive = emulator.drive.list(None)
    assert [f.id for f in drive if f.mimeType != "application/vnd.google-apps.folder"] == [stale["id"]]


@pytest.mark.emulator(file_dimensions=64, drive_listing_lag_seconds=1.5)
def test_parts_that_show_over_several_listings_are_all_harvested(gee_conn, emulator, tmp_path):
    hook = EarthEngineHook(gcp_conn_id=gee_conn)
    result = export_result(hook, description="lag", folder="lagging", fileNamePrefix="lag", region=BERLIN, scale=60)
    manifest = DriveHarvestOperator(
        task_id="h", destination=str(tmp_path), export_result=result, gcp_conn_id=gee_conn, settle_seconds=1.6
    ).execute({})
    requests_seen = emulator.stats()["requests"]
    assert manifest["file_count"] > 4, manifest["file_count"]
    assert emulator.stats()["drive_files"] == 0  # every part harvested: none left behind
    assert requests_seen["drive.files.list"] >= 2  # it listed again before taking the parts


@pytest.mark.parametrize("on_undeletable", ["keep", "trash"])
def test_a_file_the_identity_may_not_delete_is_kept_and_reported(gee_conn, emulator, tmp_path, on_undeletable):
    theirs = admin(emulator, "drive/files", {"folder": "theirs", "name": "t.tif", "size": 3000,
                                              "owner": "colleague@example.com"})  # fmt: skip
    first = harvest(gee_conn, tmp_path, folder="theirs", prefix="t", on_undeletable=on_undeletable)
    (entry,) = first["files"]
    assert md5(tmp_path / "t.tif") == entry["md5"] == theirs["md5Checksum"]
    assert entry["action"].startswith("downloaded; kept (not deletable: insufficientFilePermissions")
    assert emulator.stats()["drive_files"] == 1  # still there: not ours to delete (or trash)
    # a rerun does not fail forever at the same delete: the verified copy is there, the file kept
    again = harvest(gee_conn, tmp_path, folder="theirs", prefix="t", on_undeletable=on_undeletable)
    assert again["files"][0]["action"].startswith("already there; kept (not deletable")


def test_on_undeletable_fail_fails_after_verifying(gee_conn, emulator, tmp_path):
    admin(emulator, "drive/files", {"folder": "theirs", "name": "t.tif", "size": 300, "owner": "colleague@example.com"})
    with pytest.raises(GeeConfigurationError, match="copied and verified but may not be deleted"):
        harvest(gee_conn, tmp_path, folder="theirs", prefix="t", on_undeletable="fail")
    assert (tmp_path / "t.tif").exists() and emulator.stats()["drive_files"] == 1


def _without_folder_id(result: dict) -> dict:
    # EE's destinationUris need not carry a Drive folder id: the harvest must find the folder itself
    return {**result, "drive_folder_id": None, "destination_uris": []}


def test_a_folder_name_with_a_slash_is_one_literal_name(gee_conn, emulator, tmp_path):
    hook = EarthEngineHook(gcp_conn_id=gee_conn)
    result = export_result(hook, description="lit", folder="2024/q1", fileNamePrefix="lit", region=BERLIN, scale=2000)
    manifest = harvest(gee_conn, tmp_path, export_result=_without_folder_id(result), wait_timeout=5)
    assert [f["source_name"] for f in manifest["files"]] == ["lit.tif"]
    assert emulator.stats()["drive_files"] == 0


def test_of_folders_sharing_a_name_the_one_ee_wrote_into_is_harvested(gee_conn, emulator, tmp_path):
    from airflow_provider_gee.hooks.drive import FOLDER_MIME, DriveHook

    drive = DriveHook(gcp_conn_id=gee_conn).get_conn()
    for _ in range(2):
        drive.files().create(body={"name": "dup", "mimeType": FOLDER_MIME}, fields="id").execute()
    hook = EarthEngineHook(gcp_conn_id=gee_conn)
    result = export_result(hook, description="d1", folder="dup", fileNamePrefix="d1", region=BERLIN, scale=2000)
    manifest = harvest(gee_conn, tmp_path, export_result=_without_folder_id(result), wait_timeout=5)
    assert [f["source_name"] for f in manifest["files"]] == ["d1.tif"]
