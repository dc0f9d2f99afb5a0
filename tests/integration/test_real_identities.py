"""The identities people and platforms really have, each running an export end to end against the
emulator with the real google-auth flows: a person's EE credentials (``earthengine authenticate``),
a gcloud login (no Drive since 2025), credentials that name another quota project, service-account
impersonation (IAM Credentials), workload identity federation (STS) and the metadata server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from airflow_provider_gee.exceptions import GeeConfigurationError
from airflow_provider_gee.hooks.drive import DriveHook
from airflow_provider_gee.hooks.earth_engine import EarthEngineHook
from airflow_provider_gee.operators.export import GeeExportOperator
from airflow_provider_gee.operators.harvest import GeeHarvestOperator
from tests.helpers import export_constant, wait_for

pytestmark = pytest.mark.integration

GOOGLE_DEFAULT = pytest.mark.emulator(service_account_drive_quota_bytes=0)
DRIVE = "https://www.googleapis.com/auth/drive"
ROOT = Path(__file__).resolve().parents[2]


def _done(hook: EarthEngineHook, name: str) -> dict:
    return wait_for(lambda: (op := hook.get_operation(name))["metadata"]["state"] in ("SUCCEEDED", "FAILED") and op)


def _conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, conn: dict) -> str:
    conn["extra"]["retry_initial_seconds"] = 0.01
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return conn_id


def _drive_export(conn_id: str, prefix: str) -> GeeExportOperator:
    return GeeExportOperator(task_id="export", asset="projects/p/assets/x", folder="mine", file_name_prefix=prefix,
                             region=[13.2, 52.4, 13.3, 52.5], scale=1000, gcp_conn_id=conn_id,
                             run_scoped_names=False)  # fmt: skip


# ---------------------------------------------------------------------------- EE credentials


@GOOGLE_DEFAULT
@pytest.mark.parametrize("form", ["path", "content"])
def test_ee_credentials_export_to_drive_and_harvest(emulator, monkeypatch, tmp_path, form):
    """The file `earthengine authenticate` writes carries EE's client and the Drive scope: a
    connection naming it (its path, or its JSON) exports to Drive and harvests as the person."""
    path = tmp_path / "credentials"
    path.write_text(json.dumps(emulator.ee_credentials("analyst@example.com")))
    extra = str(path) if form == "path" else path.read_text()
    conn_id = _conn(monkeypatch, "gee_ee", emulator.connection(user=True, ee_credentials=extra))
    hook = EarthEngineHook(gcp_conn_id=conn_id)
    assert hook.identity_kind.startswith("EE credentials")
    info = hook.token_info()
    assert info["email"] == "analyst@example.com" and DRIVE in info["scope"].split()
    op = _done(hook, export_constant(hook, f"ee-creds-{form}", folder="mine", fileNamePrefix="ee-creds")["name"])
    assert op["metadata"]["state"] == "SUCCEEDED", op
    (file,) = [f for f in emulator.drive.files.values() if f.name == "ee-creds.tif"]
    assert file.owner == "analyst@example.com"
    manifest = GeeHarvestOperator(task_id="h", destination=str(tmp_path / "out"), folder="mine", prefix="ee-creds",
                                  gcp_conn_id=conn_id).execute({})  # fmt: skip
    assert [f["action"] for f in manifest["files"]] == ["downloaded"]


def test_a_bad_ee_credentials_extra_is_named_with_its_fix_but_never_repeated(emulator, monkeypatch, tmp_path):
    for value, expected in [
        (str(tmp_path / "missing"), "neither JSON nor the path of a readable file"),
        ("1//0gBareRefreshTokenPastedByMistake", "neither JSON nor the path of a readable file"),
        ("{not json", "is not JSON"),
        (json.dumps({"project": "p"}), "no refresh_token"),
    ]:
        conn_id = _conn(monkeypatch, "gee_bad", emulator.connection(user=True, ee_credentials=value))
        with pytest.raises(GeeConfigurationError, match=expected) as info:
            EarthEngineHook(gcp_conn_id=conn_id).get_credentials()
        assert "ee_credentials" in str(info.value) and "earthengine authenticate" in str(info.value)
        assert value not in str(info.value)  # it may be the credential itself
    assert emulator.stats()["requests"] == {}  # nothing remote was touched


def test_the_refresh_token_is_masked_in_logs(emulator, monkeypatch):
    try:
        from airflow.sdk._shared.secrets_masker import redact
    except ImportError:  # Airflow before 3.1's shared layout
        from airflow.sdk.execution_time.secrets_masker import redact

    stored = emulator.ee_credentials()
    conn_id = _conn(monkeypatch, "gee_mask", emulator.connection(user=True, ee_credentials=json.dumps(stored)))
    EarthEngineHook(gcp_conn_id=conn_id).get_credentials()
    assert stored["refresh_token"] not in str(redact(f"refresh with {stored['refresh_token']}"))


def test_a_refresh_token_google_refuses_fails_the_trigger_naming_the_connection(emulator, monkeypatch):
    """The triggerer's async hook refreshes the same credentials: a refused refresh (a revoked
    consent) is EarthEngineError naming the connection and Google's answer, not retried."""
    import asyncio

    import aiohttp

    from airflow_provider_gee.exceptions import EarthEngineError
    from airflow_provider_gee.hooks.earth_engine import EarthEngineAsyncHook

    revoked = {**emulator.ee_credentials(), "refresh_token": "1//emu-revoked"}
    conn_id = _conn(monkeypatch, "gee_revoked", emulator.connection(user=True, ee_credentials=json.dumps(revoked)))

    async def listing() -> dict:
        async with aiohttp.ClientSession() as session:
            path = f"projects/{emulator.config.project}/operations"
            return await EarthEngineAsyncHook(gcp_conn_id=conn_id).request(session, "GET", path)

    with pytest.raises(EarthEngineError) as info:
        asyncio.run(listing())
    assert "Connection 'gee_revoked' could not get an access token" in str(info.value)
    assert "invalid_grant" in str(info.value) and not info.value.retryable


def test_a_refresh_token_goes_only_to_google_or_a_local_emulator(monkeypatch, tmp_path):
    """A person's refresh token lives long: a connection whose api_url is some other host does not
    get it on a guess (a leftover dev api_url, or someone pointing a connection at their server)."""
    (tmp_path / "credentials").write_text(json.dumps({"refresh_token": "1//0gSecret", "project": "my-project"}))
    extra = {
        "project": "my-project",
        "api_url": "https://ee.example.net",
        "ee_credentials": str(tmp_path / "credentials"),
    }
    monkeypatch.setenv("AIRFLOW_CONN_GEE_REMOTE", json.dumps({"conn_type": "google_cloud_platform", "extra": extra}))
    with pytest.raises(GeeConfigurationError, match="extra 'token_uri'"):
        EarthEngineHook(gcp_conn_id="gee_remote").get_credentials()
    extra["token_uri"] = "https://ee.example.net/oauth/token"  # an emulator elsewhere, named on purpose
    monkeypatch.setenv("AIRFLOW_CONN_GEE_NAMED", json.dumps({"conn_type": "google_cloud_platform", "extra": extra}))
    assert EarthEngineHook(gcp_conn_id="gee_named").get_credentials().token_uri == extra["token_uri"]


# ---------------------------------------------------------------------------- gcloud's login


def test_gcloud_login_is_refused_the_drive_scope(emulator):
    with pytest.raises(ValueError, match=r"Access blocked.*--client-id-file"):
        emulator.user_credentials(scopes=("https://www.googleapis.com/auth/earthengine", DRIVE))
    assert DRIVE not in emulator.user_credentials()["scopes"]  # gcloud's client: Cloud scopes only
    assert DRIVE in emulator.user_credentials(client="own")["scopes"]  # --client-id-file


@GOOGLE_DEFAULT
def test_a_drive_export_without_the_drive_scope_fails_before_submitting(emulator, monkeypatch, tmp_path):
    adc = tmp_path / "adc.json"
    adc.write_text(json.dumps(emulator.user_credentials()))  # gcloud's client
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
    conn_id = _conn(monkeypatch, "gee_gcloud", emulator.connection(user=True))
    with pytest.raises(GeeConfigurationError, match="has no Drive scope") as info:
        _drive_export(conn_id, "no-scope").submit_job({"ti": None})
    assert "ee_credentials" in str(info.value) and "--client-id-file" in str(info.value)
    assert emulator.stats()["export_requests"] == 0


# ---------------------------------------------------------------------------- quota project


@GOOGLE_DEFAULT
def test_credentials_naming_another_quota_project_bill_the_ee_project(emulator, monkeypatch, tmp_path):
    """An ADC file from gcloud names a quota project of its own; google-auth would send it instead
    of the EE project (and Google refuses a project the caller may not use)."""
    person = emulator.user_credentials(client="own")
    person["quota_project_id"] = "someone-elses-project"
    adc = tmp_path / "adc.json"
    adc.write_text(json.dumps(person))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
    conn_id = _conn(monkeypatch, "gee_quota", emulator.connection(user=True))
    hook = EarthEngineHook(gcp_conn_id=conn_id)
    assert list(hook.list_operations()) == []
    hook.create_folder("quota/inner")
    op = _done(hook, export_constant(hook, "quota-export", folder="mine")["name"])
    assert op["metadata"]["state"] == "SUCCEEDED"
    assert DriveHook(gcp_conn_id=conn_id).storage_quota()["limit"] != 0
    assert hook.project_config()["registrationState"].startswith("REGISTERED")


# ---------------------------------------------------------------------------- platforms


def _sa_export_to_asset(hook: EarthEngineHook, name: str) -> dict:
    import ee

    from tests.helpers import BERLIN

    hook.initialize_ee()
    hook.create_folder("ids")
    op = hook.start_export(ee.Image.constant(1), kind="image", destination="asset", request_id=name, description=name,
                           assetId=f"ids/{name}", region=ee.Geometry.Rectangle(BERLIN), scale=1000)  # fmt: skip
    return _done(hook, op["name"])


@pytest.mark.parametrize("where", ["extra", "hook"])
def test_impersonation_chain_exports_as_the_impersonated_account(emulator, monkeypatch, where):
    target = f"exporter@{emulator.config.project}.iam.gserviceaccount.com"
    conn = emulator.connection()
    if where == "extra":
        conn["extra"]["impersonation_chain"] = f"middle@{emulator.config.project}.iam.gserviceaccount.com,{target}"
    conn_id = _conn(monkeypatch, "gee_imp", conn)
    hook = EarthEngineHook(gcp_conn_id=conn_id, impersonation_chain=None if where == "extra" else target)
    assert hook.identity_kind == "impersonated service account"
    assert hook.token_info()["email"] == target
    assert _sa_export_to_asset(hook, f"imp-{where}")["metadata"]["state"] == "SUCCEEDED"
    (op,) = emulator.ee.operations.values()
    assert op.caller == target  # EE ran it as the impersonated account
    assert emulator.stats()["requests"]["iam.generateAccessToken"] >= 1


def test_generate_access_token_holds_iams_rules(emulator):
    import requests

    token = emulator.user_credentials(client="own")["token"]
    url = f"{emulator.url}/v1/projects/-/serviceAccounts/x@{emulator.config.project}.iam.gserviceaccount.com"
    headers = {"Authorization": f"Bearer {token}"}
    body = {"scope": [DRIVE], "lifetime": "600s"}
    ok = requests.post(f"{url}:generateAccessToken", json=body, headers=headers, timeout=10)
    assert ok.status_code == 200 and ok.json()["accessToken"]
    for body in ({"lifetime": "600s"}, {"scope": [DRIVE], "lifetime": "7200s"}, {"scope": [DRIVE], "lifetime": "x"}):
        assert requests.post(f"{url}:generateAccessToken", json=body, headers=headers, timeout=10).status_code == 400
    assert requests.post(f"{url}:generateAccessToken", json={"scope": [DRIVE]}, timeout=10).status_code == 401


def test_workload_identity_federation_exports(emulator, monkeypatch, tmp_path):
    """An ``external_account`` file: an OIDC token exchanged at STS, then a service account's token."""
    target = f"wif@{emulator.config.project}.iam.gserviceaccount.com"
    (tmp_path / "oidc").write_text("eyJhbGciOiJub25lIn0.eyJzdWIiOiJjaS1ydW5uZXIifQ.")
    config = {
        "type": "external_account",
        # a workforce pool: a workload pool's project number makes google-auth ask Cloud Resource
        # Manager (always Google's host) for the project, which no emulator can answer
        "audience": "//iam.googleapis.com/locations/global/workforcePools/ci/providers/oidc",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": f"{emulator.url}/v1/token",
        "service_account_impersonation_url": (
            f"{emulator.url}/v1/projects/-/serviceAccounts/{target}:generateAccessToken"
        ),
        "credential_source": {"file": str(tmp_path / "oidc")},
    }
    (tmp_path / "wif.json").write_text(json.dumps(config))
    conn = emulator.connection(user=True)
    conn["extra"]["credential_config_file"] = str(tmp_path / "wif.json")
    hook = EarthEngineHook(gcp_conn_id=_conn(monkeypatch, "gee_wif", conn))
    assert hook.identity_kind.startswith("external account")
    assert hook.token_info()["email"] == target
    assert _sa_export_to_asset(hook, "wif")["metadata"]["state"] == "SUCCEEDED"
    assert emulator.stats()["requests"]["sts.token"] == 1


METADATA_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from airflow_provider_gee.exceptions import GeeConfigurationError
    from airflow_provider_gee.hooks.earth_engine import EarthEngineHook
    from airflow_provider_gee.operators.export import GeeExportOperator
    from tests.helpers import export_constant, wait_for

    from tests.integration.test_real_identities import _sa_export_to_asset

    hook = EarthEngineHook(gcp_conn_id="gee_vm")
    out = {"kind": hook.identity_kind, "info": hook.token_info()}
    out["state"] = _sa_export_to_asset(hook, "vm-export")["metadata"]["state"]
    drive = GeeExportOperator(task_id="e", asset="projects/p/assets/x", folder="mine", region=[13.2, 52.4, 13.3, 52.5],
                              gcp_conn_id="gee_vm")
    try:
        drive.submit_job({"ti": None})
    except GeeConfigurationError as exc:
        out["drive_error"] = str(exc)
    print(json.dumps(out))
    """
)


def test_the_metadata_server_exports_and_a_drive_export_is_refused_for_its_scopes(emulator, tmp_path):
    """A VM's (GKE's, Cloud Run's, Composer's) identity: google-auth finds the metadata server
    (``GCE_METADATA_HOST``) when nothing else is configured; its token carries the VM's scopes."""
    host = emulator.url.removeprefix("http://")
    conn = emulator.connection(user=True)
    env = {
        **{k: v for k, v in os.environ.items() if k != "GOOGLE_APPLICATION_CREDENTIALS"},
        "GCE_METADATA_HOST": host, "GCE_METADATA_IP": host,
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),  # no gcloud login of this machine's user
        "AIRFLOW_CONN_GEE_VM": json.dumps(conn), "PYTHONPATH": str(ROOT),
    }  # fmt: skip
    done = subprocess.run([sys.executable, "-c", METADATA_SCRIPT], env=env, capture_output=True, text=True,
                          timeout=300, cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["kind"].startswith("metadata server")
    assert out["info"]["email"].endswith("-compute@developer.gserviceaccount.com")
    assert out["info"]["scope"] == "https://www.googleapis.com/auth/cloud-platform"
    assert out["state"] == "SUCCEEDED"
    assert "has no Drive scope" in out["drive_error"] and "metadata server" in out["drive_error"]
    assert emulator.stats()["export_requests"] == 1  # the Drive export never reached EE


# ---------------------------------------------------------------------------- Google's endpoints


@pytest.mark.parametrize(
    ("api_url", "google"),
    [
        ("https://earthengine.googleapis.com", True),
        ("https://earthengine-highvolume.googleapis.com", True),
        ("https://us-central1-earthengine.googleapis.com", True),
        ("http://earthengine.googleapis.com", False),
        ("https://earthengine.googleapis.com.example.net", False),
        ("http://127.0.0.1:8080", False),
    ],
)
def test_any_google_host_is_google(monkeypatch, api_url, google):
    from airflow_provider_gee.links.earth_engine import task_url

    conn = {"conn_type": "google_cloud_platform", "extra": {"project": "my-project", "api_url": api_url}}
    monkeypatch.setenv("AIRFLOW_CONN_GEE_HOST", json.dumps(conn))
    hook = EarthEngineHook(gcp_conn_id="gee_host")
    assert hook.uses_google is google
    assert (hook.drive_api_url is None) is google  # Google's own Drive, not {api_url}/drive/v3
    if google:
        assert hook.token_uri == "https://oauth2.googleapis.com/token"
    elif api_url.startswith("http://127.0.0.1"):
        assert hook.token_uri == f"{api_url}/token"
    else:  # not Google, not this machine: no refresh token goes there unless named
        with pytest.raises(GeeConfigurationError, match="token_uri"):
            hook.token_uri  # noqa: B018
    link = task_url(hook.api_url, hook.uses_google, "projects/my-project/operations/ABC")
    assert link.startswith("https://code.earthengine.google.com") is google
