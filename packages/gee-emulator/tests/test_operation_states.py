"""An EE task's states move only as the transition table allows, through the REST API's own
calls: queued, running, cancelling, ended; an ended task never moves again."""

from __future__ import annotations

import time

import pytest
import requests

from gee_emulator.ee_state import TRANSITIONS, EmulatorConfig, move
from gee_emulator.server import EmulatorServer

PROJECT = "states"
EXPORT = {
    "expression": {"result": "0", "values": {"0": {"constantValue": 1}}},
    "description": "states", "fileExportOptions": {"fileFormat": "GEO_TIFF", "driveDestination": {"folder": "f"}},
    "grid": {"dimensions": {"width": 2, "height": 2}},
}  # fmt: skip


@pytest.fixture
def emulator():
    with EmulatorServer(EmulatorConfig(project=PROJECT, ee_concurrency=1, task_seconds=30.0)) as emu:
        yield emu


def submit(emu: EmulatorServer) -> str:
    # EE's REST call, as ee.batch sends it (the emulator asks no token unless require_auth)
    answer = requests.post(f"{emu.url}/v1/projects/{PROJECT}/image:export", json=EXPORT, timeout=10)
    answer.raise_for_status()
    return answer.json()["name"]


def state(emu: EmulatorServer, name: str) -> str:
    return emu.ee.get_operation(name).state


def test_the_table_names_every_state_and_ended_tasks_go_nowhere():
    assert set(TRANSITIONS) == {"PENDING", "RUNNING", "CANCELLING", "SUCCEEDED", "FAILED", "CANCELLED"}
    assert all(targets <= set(TRANSITIONS) for targets in TRANSITIONS.values())
    assert not any(TRANSITIONS[s] for s in ("SUCCEEDED", "FAILED", "CANCELLED"))


def test_tasks_move_through_the_table_and_a_move_outside_it_raises(emulator):
    running, queued = submit(emulator), submit(emulator)  # one slot: the second waits
    assert (state(emulator, running), state(emulator, queued)) == ("RUNNING", "PENDING")
    emulator.ee.cancel(queued)
    assert state(emulator, queued) == "CANCELLED"  # a queued task is cancelled at once
    emulator.ee.cancel(running)
    emulator.ee.cancel(running)  # a second cancel while cancelling (the provider may send several)
    deadline = time.monotonic() + 10
    while state(emulator, running) != "CANCELLED":  # a running one via CANCELLING
        assert state(emulator, running) == "CANCELLING" and time.monotonic() < deadline
        time.sleep(0.02)
    with pytest.raises(RuntimeError, match="cannot go from CANCELLED to RUNNING"):
        move(emulator.ee.get_operation(running), "RUNNING")
    submit(emulator)  # left running: stopping the emulator cancels it, its thread ends cleanly


def test_a_restart_queues_unfinished_tasks_again_as_new_attempts(tmp_path):
    state_dir = tmp_path / "state"
    config = EmulatorConfig(project=PROJECT, ee_concurrency=1, task_seconds=30.0)
    with EmulatorServer(config, state_dir=state_dir) as first:
        running, queued = submit(first), submit(first)
    with EmulatorServer(config, state_dir=state_dir) as second:
        ops = {name: second.ee.get_operation(name) for name in (running, queued)}
        assert {op.state for op in ops.values()} <= {"PENDING", "RUNNING"}
        assert ops[running].metadata["attempt"] == 2
        for name in ops:
            second.ee.cancel(name)
