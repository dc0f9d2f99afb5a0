"""The run report replaces its files whole: a symlink planted at a report file's name is replaced,
never written through, and a report that fails half way leaves the previous one whole."""

from __future__ import annotations

import json

import pytest

from airflow_provider_gee.utils.report import build_manifest, write_report

TILES = [
    {"tile_id": t, "bbox": [i, 0, i + 1, 1],
     "geometry": {"type": "Polygon", "coordinates": [[[i, 0], [i + 1, 0], [i + 1, 1], [i, 1], [i, 0]]]}}
    for i, t in enumerate(("a", "b"))
]  # fmt: skip


def export(tile: str) -> dict:
    return {"tile_id": tile, "operation": f"projects/p/operations/{tile}", "state": "SUCCEEDED", "eecu_seconds": 2.0}


@pytest.mark.parametrize("name", ["manifest.json", "tiles.png", "tiles_cost.png"])
def test_a_symlink_planted_at_a_report_file_is_replaced_not_followed(tmp_path, name):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    report = tmp_path / "report"
    report.mkdir()
    (report / name).symlink_to(victim)
    paths = write_report(build_manifest(TILES, [export("a"), export("b")], []), TILES, report)
    assert victim.read_text() == "keep me"
    assert not (report / name).is_symlink() and (report / name).stat().st_size > 0
    assert json.loads((report / "manifest.json").read_text())["records"][0]["tile_id"] == "a"
    assert sorted(p.name for p in report.iterdir()) == ["manifest.json", "tiles.png", "tiles_cost.png"]
    assert paths["manifest"] == str(report / "manifest.json")


def test_a_report_that_fails_half_way_leaves_the_previous_report_whole(tmp_path):
    report = tmp_path / "report"
    write_report(build_manifest(TILES, [export("a")], []), TILES, report)
    before = {p.name: p.read_bytes() for p in report.iterdir()}
    broken = [*TILES, {"tile_id": "c", "bbox": [2, 0, 3, 1], "geometry": {"type": "Polygon", "coordinates": "x"}}]
    with pytest.raises(ValueError, match="could not convert"):  # shapely, on the broken geometry
        write_report(build_manifest(broken, [export("a"), export("b")], []), broken, report)
    assert {p.name: p.read_bytes() for p in report.iterdir()} == before  # whole, and no staging left
