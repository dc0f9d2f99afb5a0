"""Names given outside Airflow: run tokens, requestIds, reserved part ids, and which files are an
export's (utils.naming, utils.operations)."""

from __future__ import annotations

import pytest

from airflow_provider_gee.utils.naming import (
    request_id,
    run_token,
    scoped_name,
    tile_id_problem,
)
from airflow_provider_gee.utils.operations import export_extensions, export_file_pattern


def test_run_tokens_differ_by_run_and_deployment_and_are_stable():
    token = run_token("dag", "scheduled__2024-01-01", deployment="prod")
    assert token == run_token("dag", "scheduled__2024-01-01", deployment="prod") and len(token) == 8
    assert token != run_token("dag", "scheduled__2024-02-01", deployment="prod")
    assert token != run_token("dag", "scheduled__2024-01-01", deployment="staging")
    assert token != run_token("dag2", "scheduled__2024-01-01", deployment="prod")


def test_the_token_goes_where_the_name_says_or_at_its_end():
    assert scoped_name("r1c1", "abcd1234") == "r1c1_abcd1234"
    assert scoped_name("runs/{run_token}/r1c1", "abcd1234") == "runs/abcd1234/r1c1"


def test_request_ids_are_unique_to_deployment_tile_and_arguments():
    base = dict(tile_id="r1c1", fingerprint="f1", deployment="prod")
    rid = request_id("dag", "export", "scheduled__x", 0, 0, **base)
    assert rid == request_id("dag", "export", "scheduled__x", 0, 0, **base)
    assert len(rid) <= 60 and set(rid) <= set("0123456789abcdef-g")
    assert rid != request_id("dag", "export", "scheduled__x", 0, 0, **{**base, "deployment": "staging"})
    assert rid != request_id("dag", "export", "scheduled__x", 0, 0, **{**base, "tile_id": "r2c2"})
    assert rid != request_id("dag", "export", "scheduled__x", 0, 0, **{**base, "fingerprint": "f2"})
    assert rid != request_id("dag", "export", "scheduled__x", 0, 1, **base)
    assert rid != request_id("dag", "export", "scheduled__x", 0, 0, "_q1", **base)


@pytest.mark.parametrize("tile_id", ["A_q1", "r1c1_q0", "r1c1_q0_q3"])
def test_tile_ids_ending_like_a_part_are_refused(tile_id):
    assert "reserved for the parts" in tile_id_problem(tile_id)


def test_tile_ids_ending_like_a_shard_are_refused():
    assert "sharded file" in tile_id_problem("r1-0000000000-0000000256")


@pytest.mark.parametrize("tile_id", ["r0001c0001", "0123-1", "A_q", "A_q4", "quarry"])
def test_ordinary_tile_ids_are_accepted(tile_id):
    assert tile_id_problem(tile_id) is None


@pytest.mark.parametrize("tile_id", ["", "a/b", "a b", "x" * 65, "../t"])
def test_tile_ids_that_cannot_name_files_are_refused(tile_id):
    assert "1-64 characters" in tile_id_problem(tile_id)


def test_a_prefix_with_a_dot_takes_only_its_own_files():
    own = export_file_pattern("ndvi", export_extensions(None, "image"))
    assert own.fullmatch("ndvi.tif") and own.fullmatch("ndvi-0000000000-0000000512.tif")
    for other in ("ndvi.2020.tif", "ndvi.csv", "ndvi_2020.tif", "ndvi.tif.bak", "ndvi-1-2.tif"):
        assert not own.fullmatch(other), other


@pytest.mark.parametrize(
    ("file_format", "export_type", "name", "taken"),
    [
        ("CSV", "table", "t.csv", True),
        ("CSV", "table", "t.geojson", False),
        ("GeoJSON", "table", "t.geojson", True),
        ("GEO_JSON", "table", "t.geojson", True),
        (None, "table", "t.csv", True),
        ("TFRecord", "table", "t.tfrecord.gz", True),
        ("TFRecord", "table", "t.json", False),
        ("TFRecord", "image", "t.json", True),
        ("GeoTIFF", "image", "t.csv", False),
        ("SHP", "table", "t.dbf", True),
    ],
)
def test_the_extensions_are_the_file_formats(file_format, export_type, name, taken):
    pattern = export_file_pattern("t", export_extensions(file_format, export_type))
    assert bool(pattern.fullmatch(name)) is taken


def test_a_shortened_description_keeps_the_token_and_the_parts_suffix():
    from airflow_provider_gee.utils.naming import scoped_description

    long = "x" * 150
    text = scoped_description(long, "abcd1234", ".", "_q1")
    assert len(text) == 100 and text.endswith(".abcd1234_q1")
    assert scoped_description(long, "abcd1234", ".") != scoped_description(long + "y", "abcd1234", ".")
    assert scoped_description("a_{run_token}_b", "abcd1234", "_") == "a_abcd1234_b"
    assert scoped_description("plain", "", "_") == "plain"
