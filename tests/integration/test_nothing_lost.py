"""Nothing lost in the paths an unlucky or hostile world takes: temporary names that collide with
real files, harvests that meet in one destination, a retry after a try that deleted some sources,
object stores that already hold a name, sources that give no md5. Each case was a data loss."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_gee.exceptions import DownloadVerificationError
from airflow_provider_gee.operators.harvest import GeeHarvestOperator, RemoteFile
from tests.helpers import admin

pytestmark = pytest.mark.integration


def seed(emu, folder: str, name: str, size: int, seed: int = 0) -> dict:
    return admin(emu, "drive/files", {"folder": folder, "name": name, "size": size, "seed": seed})


def harvest(gee_conn: str, destination, **kw: Any) -> dict:
    return GeeHarvestOperator(task_id="harvest", destination=str(destination), gcp_conn_id=gee_conn, **kw).execute({})


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_a_users_part_file_and_a_planted_symlink_are_left_alone(gee_conn, emulator, tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "tile.tif.part").write_bytes(b"the user's own file")  # the old temporary name
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"outside the destination")
    (dest / "other.tif.part").symlink_to(victim)
    f = seed(emulator, "p", "tile.tif", 5000)
    seed(emulator, "p", "other.tif", 3000, seed=1)
    manifest = harvest(gee_conn, dest, folder="p")
    assert (dest / "tile.tif.part").read_bytes() == b"the user's own file"
    assert victim.read_bytes() == b"outside the destination" and (dest / "other.tif.part").is_symlink()
    assert md5(dest / "tile.tif") == f["md5Checksum"]
    assert {e["name"] for e in manifest["files"]} == {"tile.tif", "other.tif"}
    assert not [p for p in dest.iterdir() if p.name.startswith(".gee-tmp-")]


def test_titles_that_collide_after_suffixing_get_distinct_names():
    # the suffix used to be the id's last 12 characters: these ids share them
    files = [RemoteFile(i, "t.tif", 1, None) for i in ("t.tif", "p/q/long/t.tif", "r/q/long/t.tif", "T.TIF")]
    files.append(RemoteFile("x", "T.tif", 1, None))  # one name on a case-insensitive filesystem
    names = GeeHarvestOperator._plan_names(files)
    assert len({n.casefold() for n in names.values()}) == len(files)


def test_two_harvests_into_one_destination_keep_both_files(gee_conn, emulator, tmp_path):
    a = [seed(emulator, "run-a", f"tile-{i}.tif", 200_000 + i, seed=i) for i in range(4)]
    b = [seed(emulator, "run-b", f"tile-{i}.tif", 200_000 + i, seed=100 + i) for i in range(4)]
    results: dict[str, dict] = {}

    def run(folder: str) -> None:
        results[folder] = harvest(gee_conn, tmp_path, folder=folder, max_parallel=4, chunk_size=65536)

    threads = [threading.Thread(target=run, args=(folder,)) for folder in ("run-a", "run-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert set(results) == {"run-a", "run-b"}
    on_disk = {e["path"]: e["md5"] for r in results.values() for e in r["files"]}
    assert len(on_disk) == 8  # eight files under eight names
    for path, digest in on_disk.items():
        assert md5(Path(path)) == digest
    assert sorted(on_disk.values()) == sorted(f["md5Checksum"] for f in a + b)
    assert emulator.stats()["drive_files"] == 0


@pytest.mark.slow  # Drive's client retries 20 failed deletes with backoff
def test_a_retry_after_a_try_that_deleted_some_sources_lists_every_file(gee_conn, emulator, tmp_path):
    files = [seed(emulator, "r", f"part-{i}.bin", 50_000, seed=i) for i in range(3)]
    # the first two deletes go through, then Drive fails for longer than the client retries
    admin(emulator, "faults", {"kind": "http", "route": "drive.files.delete", "status": 503, "skip": 2,
                               "count": 20})  # fmt: skip
    with pytest.raises(Exception, match="503"):
        harvest(gee_conn, tmp_path, folder="r", max_parallel=1)
    assert emulator.stats()["drive_files"] == 1
    admin(emulator, "faults", method="DELETE")
    manifest = harvest(gee_conn, tmp_path, folder="r")
    assert sorted(e["md5"] for e in manifest["files"]) == sorted(f["md5Checksum"] for f in files)
    assert manifest["file_count"] == 3 and emulator.stats()["drive_files"] == 0
    # and a retry after a try that deleted everything: done, with the same manifest
    again = harvest(gee_conn, tmp_path, folder="r", export_result={"destination": "drive", "state": "SUCCEEDED",
                                                                   "description": "r"})  # fmt: skip
    assert sorted(e["name"] for e in again["files"]) == sorted(e["name"] for e in manifest["files"])


def test_a_retry_refuses_to_report_a_file_that_vanished_from_the_destination(gee_conn, emulator, tmp_path):
    seed(emulator, "v", "only.bin", 1000)
    manifest = harvest(gee_conn, tmp_path, folder="v")
    Path(manifest["files"][0]["path"]).unlink()
    with pytest.raises(Exception, match="gone from the destination"):
        harvest(gee_conn, tmp_path, folder="v")


def test_an_object_store_destination_never_replaces_another_object(gee_conn, emulator, gcs_url):
    from airflow.sdk import ObjectStoragePath

    existing = ObjectStoragePath(f"gs://{gee_conn}@landing/run1/tile.csv")
    existing.write_bytes(b"an earlier, different tile.csv")
    f = seed(emulator, "m", "tile.csv", 3000)
    manifest = harvest(gee_conn, f"gs://{gee_conn}@landing/run1", folder="m")
    assert existing.read_bytes() == b"an earlier, different tile.csv"
    (entry,) = manifest["files"]
    assert entry["name"] != "tile.csv" and entry["action"] == "downloaded"
    assert hashlib.md5(ObjectStoragePath(entry["path"]).read_bytes()).hexdigest() == f["md5Checksum"]
    # a rerun finds it there (by md5) instead of adding a third object
    f2 = seed(emulator, "m", "tile.csv", 3000)
    rerun = harvest(gee_conn, f"gs://{gee_conn}@landing/run1", folder="m")
    assert f2["md5Checksum"] == f["md5Checksum"] and rerun["files"][0]["name"] == entry["name"]
    assert rerun["files"][0]["action"] == "already there"


class _Crc32cOnlySource:
    """A store that, like Cloud Storage for composite objects, reports a crc32c and no md5."""

    kind = "gcs"

    def __init__(self, root: Path, corrupt: bool = False) -> None:
        self.root, self.corrupt = root, corrupt

    def list(self) -> list[RemoteFile]:
        import google_crc32c

        return [
            RemoteFile(
                p.name, p.name, p.stat().st_size, None, None, google_crc32c.Checksum(p.read_bytes()).digest().hex()
            )
            for p in sorted(self.root.iterdir())
        ]

    def download(self, f: RemoteFile, target: Path, chunk_size: int) -> None:
        data = (self.root / f.id).read_bytes()
        target.write_bytes(bytes([data[0] ^ 1]) + data[1:] if self.corrupt else data)

    def delete(self, f: RemoteFile) -> None:
        (self.root / f.id).unlink()

    def refusal(self, exc: Exception) -> None:
        return None

    def where(self) -> str:
        return f"store {self.root}"


def crc_harvest(source: _Crc32cOnlySource, dest: Path) -> dict:
    op = GeeHarvestOperator(task_id="h", destination=str(dest), bucket="b")
    op._source = lambda *_: source  # type: ignore[method-assign]
    return op.execute({})


def test_files_without_an_md5_are_checked_by_crc32c_and_never_overwrite_each_other(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    dest.mkdir()
    contents = [b"first run " * 100, b"second run " * 100, b"third run " * 100]
    for content in contents:  # three runs whose composite object has the same name
        (src / "t.tif").write_bytes(content)
        crc_harvest(_Crc32cOnlySource(src), dest)
    kept = sorted(p.read_bytes() for p in dest.iterdir() if not p.name.startswith(".gee-harvest-"))
    assert kept == sorted(contents)
    (src / "t.tif").write_bytes(contents[2])
    assert crc_harvest(_Crc32cOnlySource(src), dest)["files"][0]["action"] == "already there"
    (src / "u.tif").write_bytes(b"will arrive damaged")
    with pytest.raises(DownloadVerificationError, match="crc32c"):
        crc_harvest(_Crc32cOnlySource(src, corrupt=True), dest)
    assert not (dest / "u.tif").exists() and (src / "u.tif").exists()  # the source is kept
    assert not [n for n in os.listdir(dest) if n.startswith(".gee-tmp-")]


HARVEST_SCRIPT = """
import json, sys
from airflow_provider_gee.operators.harvest import GeeHarvestOperator

op = GeeHarvestOperator(task_id="h", destination=sys.argv[1], folder="k", gcp_conn_id="gee_test", max_parallel=1,
                        chunk_size=1 << 20)
print(json.dumps(op.execute({})))
"""


@pytest.mark.parametrize(
    ("kill_at", "fault"),
    [
        # SIGKILL while part-0 downloads: nothing deleted yet
        ("download", {"kind": "download", "mode": "slow", "match": "part-0.bin", "bytes_per_second": 500}),
        # while part-1 downloads: part-0 copied and deleted
        ("download", {"kind": "download", "mode": "slow", "match": "part-1.bin", "bytes_per_second": 500}),
        # while part-2 downloads: two copied and deleted
        ("download", {"kind": "download", "mode": "slow", "match": "part-2.bin", "bytes_per_second": 500}),
        # while the last delete is in flight (it completes on the server: all deleted, no manifest returned)
        ("delete", {"kind": "http", "route": "drive.files.delete", "skip": 2, "delay": 30}),
    ],
    ids=["before-deletes", "after-one-delete", "after-two-deletes", "during-the-last-delete"],
)
def test_a_harvest_killed_at_any_step_is_completed_by_the_retry(gee_conn, emulator, tmp_path, kill_at, fault):
    import signal
    import subprocess
    import sys

    from tests.helpers import wait_for

    files = [seed(emulator, "k", f"part-{i}.bin", 20_000, seed=i) for i in range(3)]
    admin(emulator, "faults", fault)
    target = fault.get("match", "")
    proc = subprocess.Popen([sys.executable, "-c", HARVEST_SCRIPT, str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip
    try:
        if kill_at == "download":  # the slow file's download has begun
            index = int(target.removeprefix("part-").removesuffix(".bin"))
            wait_for(lambda: emulator.stats()["requests"].get("drive.files.download", 0) > index, timeout=60)
        else:
            wait_for(lambda: emulator.stats()["requests"].get("drive.files.delete", 0) >= 3, timeout=60)
        assert proc.poll() is None, proc.stderr.read()[-3000:] if proc.stderr else ""
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    admin(emulator, "faults", method="DELETE")
    manifest = harvest(gee_conn, tmp_path, folder="k")
    assert sorted(e["md5"] for e in manifest["files"]) == sorted(f["md5Checksum"] for f in files)
    for entry in manifest["files"]:
        assert md5(Path(entry["path"])) == entry["md5"]
    assert emulator.stats()["drive_files"] == 0
    visible = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".gee-"))
    assert visible == ["part-0.bin", "part-1.bin", "part-2.bin"]


def test_temporary_files_a_killed_harvest_left_are_removed_once_old(gee_conn, emulator, tmp_path):
    old, young = tmp_path / ".gee-tmp-old.part", tmp_path / ".gee-tmp-young.part"
    for path in (old, young):
        path.write_bytes(b"partial")
    day_ago = time.time() - 2 * 86400
    os.utime(old, (day_ago, day_ago))
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"keep")
    (tmp_path / ".gee-tmp-link.part").symlink_to(victim)
    seed(emulator, "s", "tile.tif", 1000)
    harvest(gee_conn, tmp_path, folder="s")
    assert not old.exists()  # left by a killed try, long ago
    assert young.exists()  # may be a harvest running now
    assert victim.read_bytes() == b"keep" and (tmp_path / ".gee-tmp-link.part").is_symlink()


class _NoChecksumSource(_Crc32cOnlySource):
    """A store that reports a size and neither md5 nor crc32c."""

    def list(self) -> list[RemoteFile]:
        return [RemoteFile(p.name, p.name, p.stat().st_size, None) for p in sorted(self.root.iterdir())]


def test_a_source_without_a_checksum_is_copied_but_never_deleted(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    dest.mkdir()
    (src / "t.tif").write_bytes(bytes(16))  # a size check alone would pass any 16 bytes
    manifest = crc_harvest(_NoChecksumSource(src), dest)
    (entry,) = manifest["files"]
    assert (src / "t.tif").exists()
    assert "kept (no checksum at the source" in entry["action"] and (dest / "t.tif").read_bytes() == bytes(16)
