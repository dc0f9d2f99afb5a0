"""Which listed files are an export's: EE stamps its task to the microsecond, Drive and Cloud
Storage their files to the millisecond, so a file made in the task's own millisecond is the
task's (an emulator task of zero seconds produced one in the same millisecond, and its harvest
waited in vain); a file of an earlier millisecond is another export's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow_provider_gee.operators.harvest import DriveHarvestOperator, RemoteFile

SUBMITTED = "2026-12-04T18:28:16.030512Z"  # EE's createTime


def own(*created: datetime) -> list[str]:
    op = DriveHarvestOperator(task_id="h", destination="/tmp/gee-unused", folder="f")
    files = [RemoteFile(f"id{i}", "t.csv", 1, "0" * 32, c) for i, c in enumerate(created)]
    return [f.id for f in op._own_files(files, {"create_time": SUBMITTED})]


def test_a_file_of_the_tasks_own_millisecond_is_the_tasks():
    same_ms = datetime(2026, 12, 4, 18, 28, 16, 30000, tzinfo=UTC)  # Drive's "…16.030Z"
    later = same_ms + timedelta(seconds=3)
    earlier = same_ms - timedelta(milliseconds=1)
    assert own(same_ms, later, earlier, None) == ["id0", "id1", "id3"]
