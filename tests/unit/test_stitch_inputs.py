"""Stitch inputs are harvested files or object-store URLs, never URLs GDAL or fsspec would fetch."""

from __future__ import annotations

import pytest

from airflow_provider_gee.exceptions import GeeConfigurationError
from airflow_provider_gee.utils.stitch import manifest_files


@pytest.mark.parametrize(
    "path",
    [
        "/vsicurl?url=http://169.254.169.254/computeMetadata/v1/instance/service-accounts/default/token/x.tif",
        "/vsicurl/http://example.com/x.tif",
        "/vsigs/bucket/x.tif",
        "/vsis3/bucket/x.tif",
        "file:///vsizip//vsicurl/http://example.com/a.zip/x.tif",
    ],
)
def test_gdal_virtual_paths_are_refused(path):
    with pytest.raises(GeeConfigurationError, match="GDAL virtual path"):
        manifest_files([path], (".tif",))
    with pytest.raises(GeeConfigurationError, match="GDAL virtual path"):
        manifest_files({"destination": "/data", "files": [{"path": path}]}, (".tif",))


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/x.tif", "https://example.com/x.tif",
                                 "ftp://example.com/x.tif"])  # fmt: skip
def test_urls_other_than_object_stores_are_refused(url):
    with pytest.raises(GeeConfigurationError, match="only harvested files and object-store URLs"):
        manifest_files([url], (".tif",))


def test_a_manifest_entry_outside_its_destination_is_refused(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    outside = tmp_path / "secret.tif"
    outside.write_bytes(b"x")
    (dest / "tile.tif").write_bytes(b"x")
    (dest / "link.tif").symlink_to(outside)
    ok = manifest_files({"destination": str(dest), "files": [{"path": str(dest / "tile.tif")}]}, (".tif",))
    assert [f.path for f in ok] == [str(dest / "tile.tif")]
    for bad in (str(dest / ".." / "secret.tif"), str(dest / "link.tif")):
        with pytest.raises(GeeConfigurationError, match="not inside its harvest destination"):
            manifest_files({"destination": str(dest), "files": [{"path": bad}]}, (".tif",))
    remote = {"destination": "gs://conn@bucket/run1", "files": [{"path": "gs://conn@bucket/run2/x.tif"}]}
    with pytest.raises(GeeConfigurationError, match="not inside its harvest destination"):
        manifest_files(remote, (".tif",))
    inside = {"destination": "gs://conn@bucket/run1", "files": [{"path": "gs://bucket/run1/x.tif"}]}
    assert len(manifest_files(inside, (".tif",))) == 1


def test_a_plain_path_must_be_a_regular_file(tmp_path):
    with pytest.raises(GeeConfigurationError, match="not a regular file"):
        manifest_files([str(tmp_path / "missing.tif")], (".tif",))
