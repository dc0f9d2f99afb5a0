"""The merge's records kept across tries: read back only when they are what this provider writes."""

from __future__ import annotations

import pytest

from airflow_provider_gee.utils.merge_plan import MergeDeletes, MergeLevel, MergePhase

DEST = "projects/p/assets/merged"
# a level as the previous version stored it (field names unchanged: a try after an upgrade goes on)
STORED_LEVEL = {
    "level": 1, "groups": [["projects/p/assets/a", "projects/p/assets/b"], ["projects/p/assets/c"]],
    "targets": [f"{DEST}__merge_l1_0000", f"{DEST}__merge_l1_0001"], "next": 1,
    "expected": {f"{DEST}__merge_l1_0000": 30, f"{DEST}__merge_l1_0001": 5},
    "from": {f"{DEST}__merge_l1_0000": "f0", f"{DEST}__merge_l1_0001": "f1"},
    "intermediates": [f"{DEST}__merge_l1_0000", f"{DEST}__merge_l1_0001"],
    "parts": ["projects/p/assets/a", "projects/p/assets/b", "projects/p/assets/c"],
    "destination": DEST, "source": "s", "operations": ["projects/p/operations/X"],
}  # fmt: skip
STORED_DELETES = {
    "destination": DEST, "from": "s", "parts": ["projects/p/assets/a"], "intermediates": [],
    "result": {"asset_id": DEST, "feature_count": 35, "parts": ["projects/p/assets/a"], "deleted": []},
}  # fmt: skip


def test_a_stored_level_and_delete_record_read_back_as_written():
    level = MergeLevel.from_json(STORED_LEVEL)
    assert level is not None and level.phase is MergePhase.MERGING and not level.final
    assert (level.level, level.next, level.sources[level.targets[1]]) == (1, 1, "f1")
    assert level.to_json() == STORED_LEVEL
    deletes = MergeDeletes.from_json(STORED_DELETES)
    assert deletes is not None and deletes.phase is MergePhase.DELETING
    assert deletes.to_json() == STORED_DELETES


@pytest.mark.parametrize(
    "change",
    [
        {"level": "1"},  # a number as text
        {"groups": [["a"], "b"]},  # a group that is not a list
        {"next": 3},  # past the last group
        {"next": -1},
        {"expected": {f"{DEST}__merge_l1_0000": 30}},  # a target without its count
        {"from": {"elsewhere": "f0", f"{DEST}__merge_l1_0001": "f1"}},
        {"parts": "projects/p/assets/a"},
        {"destination": None},
        {"operations": [1]},
    ],
)
def test_a_level_that_is_not_what_the_provider_writes_is_no_record(change):
    assert MergeLevel.from_json({**STORED_LEVEL, **change}) is None


@pytest.mark.parametrize(
    "record",
    [
        None,
        [],
        "deleting",
        {**STORED_DELETES, "parts": ["a", 2]},
        {**STORED_DELETES, "result": None},
        {**STORED_DELETES, "result": {"asset_id": DEST, "feature_count": "35", "parts": []}},
        {k: v for k, v in STORED_DELETES.items() if k != "from"},
    ],
)
def test_a_delete_record_that_is_not_what_the_provider_writes_is_no_record(record):
    assert MergeDeletes.from_json(record) is None
