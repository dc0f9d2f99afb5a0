"""Identities as Google has them: service accounts have no Drive storage, a person's credentials
(Application Default Credentials from an ``authorized_user`` file) do, only a file's owner deletes
it, and a token without the Drive scope is refused by Drive. Real clients, real hooks, the
emulator as the only stand-in."""

from __future__ import annotations

import json

import pytest
from googleapiclient.errors import HttpError

from airflow_provider_gee.exceptions import GeeConfigurationError
from airflow_provider_gee.hooks.drive import DriveHook
from airflow_provider_gee.hooks.earth_engine import EarthEngineHook
from airflow_provider_gee.operators.export import GeeExportOperator
from airflow_provider_gee.operators.harvest import GeeHarvestOperator
from tests.helpers import export_constant, wait_for

pytestmark = pytest.mark.integration

GOOGLE_DEFAULT = pytest.mark.emulator(service_account_drive_quota_bytes=0)


def _state(hook: EarthEngineHook, name: str) -> dict:
    return wait_for(lambda: (op := hook.get_operation(name))["metadata"]["state"] in ("SUCCEEDED", "FAILED") and op)


@GOOGLE_DEFAULT
def test_a_service_accounts_drive_export_fails_in_ee_with_googles_message(gee_conn, emulator):
    hook = EarthEngineHook(gcp_conn_id=gee_conn)
    op = _state(hook, export_constant(hook, "sa-drive", folder="out")["name"])
    assert op["metadata"]["state"] == "FAILED"
    assert "Service Accounts do not have storage quota" in op["error"]["message"]
    assert DriveHook(gcp_conn_id=gee_conn).storage_quota() == {"limit": 0, "usage": 0}


@GOOGLE_DEFAULT
def test_the_operator_refuses_a_service_account_drive_export_before_submitting(gee_conn, emulator):
    op = GeeExportOperator(task_id="export", asset="projects/p/assets/x", folder="out", region=[13.2, 52.4, 13.3, 52.5],
                           gcp_conn_id=gee_conn)  # fmt: skip
    with pytest.raises(GeeConfigurationError, match=r"destination='gcs'") as info:
        op.submit_job({"ti": None})
    assert "service accounts have no Drive storage" in str(info.value)
    assert emulator.stats()["export_requests"] == 0


@GOOGLE_DEFAULT
def test_a_persons_credentials_export_to_drive_and_harvest(user_conn, emulator, tmp_path):
    hook = EarthEngineHook(gcp_conn_id=user_conn)
    op = _state(hook, export_constant(hook, "user-drive", folder="mine", fileNamePrefix="user-drive")["name"])
    assert op["metadata"]["state"] == "SUCCEEDED", op
    (file,) = [f for f in emulator.drive.files.values() if f.name == "user-drive.tif"]
    assert file.owner == "analyst@example.com"  # EE wrote it as the caller
    manifest = GeeHarvestOperator(task_id="h", destination=str(tmp_path), folder="mine", prefix="user-drive",
                                  gcp_conn_id=user_conn).execute({})  # fmt: skip
    assert [f["action"] for f in manifest["files"]] == ["downloaded"]
    assert emulator.stats()["drive_files"] == 0


def test_a_token_without_the_drive_scope_is_refused_by_drive(emulator, monkeypatch):
    conn = emulator.connection()
    conn["extra"]["scope"] = "https://www.googleapis.com/auth/earthengine"
    monkeypatch.setenv("AIRFLOW_CONN_GEE_NARROW", json.dumps(conn))
    with pytest.raises(HttpError) as info:
        DriveHook(gcp_conn_id="gee_narrow").storage_quota()
    assert info.value.resp.status == 403
    assert "insufficient authentication scopes" in str(info.value)
    assert list(EarthEngineHook(gcp_conn_id="gee_narrow").list_operations()) == []  # EE needs no Drive scope


@GOOGLE_DEFAULT
def test_a_trigger_waits_with_a_persons_credentials_without_refreshing_a_valid_token(user_conn, emulator):
    import asyncio

    from airflow_provider_gee.triggers.task import GeeTaskTrigger

    hook = EarthEngineHook(gcp_conn_id=user_conn)
    name = export_constant(hook, "user-wait", folder="mine")["name"]

    async def wait() -> dict:
        trigger = GeeTaskTrigger([name], gcp_conn_id=user_conn, poll_interval=0.1)
        return (await asyncio.wait_for(anext(trigger.run()), timeout=30)).payload

    # the token of the authorized_user file is valid: no refresh (which google-auth would send to
    # Google's own token endpoint, unreachable here, whatever the file says)
    assert asyncio.run(wait())["status"] == "success"
    assert "oauth.token" not in emulator.stats()["requests"]


@GOOGLE_DEFAULT
def test_ee_refuses_a_persons_call_without_a_quota_project(emulator):
    import requests

    token = emulator.user_credentials()["token"]
    url = f"{emulator.url}/v1/projects/{emulator.config.project}/operations"
    bare = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert bare.status_code == 403 and "requires a quota project" in bare.json()["error"]["message"]
    headers = {"Authorization": f"Bearer {token}", "X-Goog-User-Project": emulator.config.project}
    assert requests.get(url, headers=headers, timeout=10).status_code == 200
    # a project the caller may not bill: Google's USER_PROJECT_DENIED
    other = requests.get(url, headers={**headers, "X-Goog-User-Project": "someone-elses-project"}, timeout=10)
    assert other.status_code == 403
    assert "serviceusage.services.use" in other.json()["error"]["message"]
    assert other.json()["error"]["details"][0]["reason"] == "USER_PROJECT_DENIED"


@GOOGLE_DEFAULT
def test_the_hooks_and_the_official_client_send_the_quota_project(user_conn, emulator):
    import asyncio

    import aiohttp
    import ee

    from airflow_provider_gee.hooks.earth_engine import EarthEngineAsyncHook

    hook = EarthEngineHook(gcp_conn_id=user_conn)
    assert list(hook.list_operations()) == []  # sync REST
    hook.initialize_ee()
    assert ee.Number(1).getInfo() == 1  # the official client through the same identity

    async def listing() -> dict:
        async with aiohttp.ClientSession() as session:
            path = f"projects/{emulator.config.project}/operations"
            return await EarthEngineAsyncHook(gcp_conn_id=user_conn).request(session, "GET", path)

    assert asyncio.run(listing()) == {"operations": []}
