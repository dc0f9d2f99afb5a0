"""The emulated Drive's query parser: supported clauses match, unknown ones are refused."""

from __future__ import annotations

import pytest

from airflow_provider_gee.hooks.drive import quote
from gee_emulator.drive_store import FOLDER_MIME, DriveError, DriveStore, parse_query


@pytest.fixture
def store(tmp_path):
    s = DriveStore(tmp_path, quota_bytes=None)
    folder = s.create_folder("exports")
    for name in ("a.tif", "b.csv", "it's.tif"):
        s.seed_file(folder.id, name, 10)
    s.create_folder("sub", folder.id)
    return s, folder.id


def names(store, q):
    return sorted(f.name for f in store.list(q))


def test_parent_name_and_mime_clauses(store):
    s, fid = store
    assert names(s, f"'{fid}' in parents and trashed = false") == ["a.tif", "b.csv", "it's.tif", "sub"]
    assert names(s, f"'{fid}' in parents and mimeType != '{FOLDER_MIME}'") == ["a.tif", "b.csv", "it's.tif"]
    assert names(s, f"mimeType = '{FOLDER_MIME}' and name = 'exports'") == ["exports"]
    assert names(s, f"name contains '.tif' and {quote(fid)} in parents") == ["a.tif", "it's.tif"]


def test_quoted_values_with_escapes_and_the_word_and_inside(store):
    s, _ = store
    assert names(s, f"name = {quote('it' + chr(39) + 's.tif')}") == ["it's.tif"]
    assert parse_query("name = 'salt and pepper'") == [("compare", ("name", "=", "salt and pepper"))]


@pytest.mark.parametrize("q", ["modifiedTime > '2020-01-01'", "name = 'a' or name = 'b'", "fullText contains 'x'"])
def test_unknown_clauses_are_errors(store, q):
    s, _ = store
    with pytest.raises(DriveError) as err:
        s.list(q)
    assert err.value.status == 400


def test_quota_is_enforced_all_or_nothing(tmp_path):
    s = DriveStore(tmp_path / "blobs", quota_bytes=25)
    s.seed_file(s.folder_for_export("x").id, "one", 10)
    with pytest.raises(DriveError, match="quota"):
        s.seed_file(s.folder_for_export("x").id, "two", 20)
    assert s.used_bytes == 10 and s.peak_bytes == 10
