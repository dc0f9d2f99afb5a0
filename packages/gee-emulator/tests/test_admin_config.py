"""The admin route that changes a running emulator's settings: one table of what may change."""

from __future__ import annotations

import dataclasses

import pytest
import requests

from gee_emulator.admin_routes import RUNTIME_CONFIG
from gee_emulator.ee_state import EmulatorConfig
from gee_emulator.server import EmulatorServer


@pytest.fixture
def emulator():
    with EmulatorServer(EmulatorConfig(project="admin-config")) as emu:
        yield emu


def configure(emu: EmulatorServer, **settings: object) -> requests.Response:
    return requests.post(f"{emu.url}/_emulator/config", json=settings, timeout=10)


def test_every_setting_the_route_changes_is_a_config_field_and_is_answered():
    fields = {f.name for f in dataclasses.fields(EmulatorConfig)}
    assert set(RUNTIME_CONFIG) <= fields, set(RUNTIME_CONFIG) - fields


def test_settings_change_and_the_answer_shows_them_all(emulator):
    answer = configure(emulator, ee_concurrency="3", task_seconds=0.5, max_queued=7).json()
    assert set(answer) == set(RUNTIME_CONFIG)
    assert (answer["ee_concurrency"], answer["task_seconds"], answer["max_queued"]) == (3, 0.5, 7)
    assert (emulator.config.ee_concurrency, emulator.config.max_queued) == (3, 7)

    configure(emulator, error_status={"queue_full": 400})
    merged = configure(emulator, error_status={"asset_exists": "409"}).json()["error_status"]
    assert merged == {"queue_full": 400, "asset_exists": 409}

    quota = configure(emulator, drive_quota_bytes=1000, quota_projects=["billing-a"]).json()
    assert emulator.drive.quota_bytes == quota["drive_quota_bytes"] == 1000
    assert emulator.config.quota_projects == ("billing-a",)
    emulator.drive.quota_bytes = 5  # set on the store directly: another setting leaves it alone
    assert configure(emulator, task_seconds=1.0).json()["drive_quota_bytes"] == 5


def test_a_setting_that_cannot_change_at_run_time_is_refused_by_name(emulator):
    refused = configure(emulator, project="elsewhere", ee_concurrency=9)
    assert refused.status_code == 400
    assert "project" in refused.json()["error"]["message"]
    assert emulator.config.project == "admin-config" and emulator.config.ee_concurrency != 9
