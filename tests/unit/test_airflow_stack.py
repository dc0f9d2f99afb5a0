"""AirflowStack's waiting: a long run is polled ever less often (each poll of a run costs the
api-server a load of all its task instances)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dev import airflow_stack
from dev.airflow_stack import AirflowStack


@pytest.mark.parametrize(
    ("max_interval", "expected"),
    [(None, [1.0] * 5), (2.0, [1.0, 1.5, 2.0, 2.0, 2.0]), (15.0, [1.0, 1.5, 2.25, 3.375, 5.0625])],
)
def test_polls_back_off_up_to_max_interval(tmp_path: Path, monkeypatch, max_interval, expected) -> None:
    slept: list[float] = []
    monkeypatch.setattr(airflow_stack.time, "sleep", slept.append)
    answers = iter([None] * 5 + ["success"])
    stack = AirflowStack(tmp_path / "home", tmp_path)  # nothing started: no process to watch
    assert stack._wait(lambda: next(answers), 60, "a run", interval=1.0, max_interval=max_interval) == "success"
    assert slept == expected
