"""Placing a verified file on an object store never replaces another object, not even one that
another harvest writes under the same new name between our look and our upload."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_gee.utils.storage import upload_new


def verified(tmp_path: Path, content: bytes) -> tuple[Path, str]:
    path = tmp_path / "local.part"
    path.write_bytes(content)
    return path, hashlib.md5(content).hexdigest()


def test_a_name_taken_after_the_look_is_not_replaced(tmp_path, monkeypatch):
    store = tmp_path / "store"
    store.mkdir()
    directory = ObjectStoragePath(f"file://{store}")
    (store / "t.tif").write_bytes(b"another harvest's t.tif, written just after our look")
    # our look happens before the other harvest's write: the name still seems free
    monkeypatch.setattr(type(directory), "exists", lambda self: self.name != "t.tif" and Path(self.path).exists())
    local, md5 = verified(tmp_path, b"our t.tif")
    name, location, uploaded = upload_new(local, directory, iter(["t.tif", "t~1.tif"]), md5)
    assert (name, uploaded) == ("t~1.tif", True)
    assert (store / "t.tif").read_bytes() == b"another harvest's t.tif, written just after our look"
    assert location.endswith("/t~1.tif") and (store / "t~1.tif").read_bytes() == b"our t.tif"
    assert not local.exists()


def test_the_same_content_under_the_name_is_the_file_already_there(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    (store / "t.tif").write_bytes(b"same")
    local, md5 = verified(tmp_path, b"same")
    name, _, uploaded = upload_new(local, ObjectStoragePath(f"file://{store}"), iter(["t.tif"]), md5)
    assert (name, uploaded) == ("t.tif", False) and sorted(p.name for p in store.iterdir()) == ["t.tif"]


def test_no_free_name_is_an_error_that_names_the_directory(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    (store / "t.tif").write_bytes(b"other")
    local, md5 = verified(tmp_path, b"ours")
    with pytest.raises(Exception, match="No free name"):
        upload_new(local, ObjectStoragePath(f"file://{store}"), iter(["t.tif"]), md5)
    assert (store / "t.tif").read_bytes() == b"other" and local.exists()
