"""``gee-doctor`` and GeeDoctorOperator against the emulator: every identity resolves and is named,
and each failure a first run meets (an unregistered project, a missing Drive scope, no Drive
storage, a pool smaller than EE's limit or without deferred tasks, no triggerer, a bucket that
cannot be written) fails with its fix. Pools and the triggerer's heartbeat are read from a real
Airflow metadata database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_gee.exceptions import GeeConfigurationError
from airflow_provider_gee.utils.doctor import Doctor, main
from tests.helpers import admin

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("airflow_db")]

ROOT = Path(__file__).resolve().parents[2]
POOL = "gee_doctor_pool"


@pytest.fixture
def pool() -> Iterator:
    """Create (or change) the pool for a test; removed afterwards."""
    from airflow.models.pool import Pool

    def make(slots: int, include_deferred: bool = True) -> None:
        Pool.create_or_update_pool(POOL, slots, "EE tasks in flight", include_deferred)

    yield make
    if Pool.get_pool(POOL) is not None:
        Pool.delete_pool(POOL)


@pytest.fixture
def triggerer() -> Iterator[None]:
    """A triggerer's heartbeat in the metadata database (the row a running triggerer keeps fresh)."""
    from airflow.jobs.job import Job, JobState
    from airflow.utils.session import create_session

    with create_session() as session:
        job = Job()
        job.job_type, job.state = "TriggererJob", JobState.RUNNING
        session.add(job)
        session.flush()
        job_id = job.id
    yield
    with create_session() as session:
        session.delete(session.get(Job, job_id))


def _conn(monkeypatch: pytest.MonkeyPatch, conn: dict, conn_id: str = "gee_doc") -> str:
    conn["extra"]["retry_initial_seconds"] = 0.01
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return conn_id


def _ee_user(emulator, monkeypatch, tmp_path) -> str:
    path = tmp_path / "credentials"
    path.write_text(json.dumps(emulator.ee_credentials()))
    return _conn(monkeypatch, emulator.connection(user=True, ee_credentials=str(path)))


def _levels(findings) -> dict[str, str]:
    return {f.check: f.level for f in findings}


def test_a_healthy_setup_passes_on_one_screen(emulator, monkeypatch, tmp_path, pool, triggerer, capsys):
    pool(emulator.config.ee_concurrency)
    conn_id = _ee_user(emulator, monkeypatch, tmp_path)
    assert main(["--conn-id", conn_id, "--pool", POOL, "--destination", "drive"]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert lines[0] == f"gee-doctor: connection {conn_id!r}"
    assert "FAIL" not in out and "WARN" not in out
    for check in ("identity", "scopes", "quota project", "registration", "pool", "drive", "triggerer"):
        assert any(line.split()[1:2] == check.split()[:1] for line in lines[1:]), (check, out)
    assert "EE credentials (earthengine authenticate): analyst@example.com" in out
    assert "noncommercial use" in out
    assert len(lines) <= 24  # one screen


@pytest.mark.emulator(registration_state="NOT_REGISTERED")
def test_an_unregistered_project_fails_with_where_to_register(emulator, monkeypatch, tmp_path, triggerer, capsys):
    conn_id = _ee_user(emulator, monkeypatch, tmp_path)
    assert main(["--conn-id", conn_id]) == 1
    out = capsys.readouterr().out
    assert "FAIL  registration" in out
    assert f"https://console.cloud.google.com/earth-engine/configuration?project={emulator.config.project}" in out


def test_a_gcloud_login_lacks_the_drive_scope_for_drive_exports(emulator, monkeypatch, tmp_path, triggerer):
    adc = tmp_path / "adc.json"
    adc.write_text(json.dumps(emulator.user_credentials()))  # gcloud's own client
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
    doctor = Doctor(_conn(monkeypatch, emulator.connection(user=True)), destination="drive")
    findings = {f.check: f for f in doctor.run()}
    assert findings["identity"].detail.startswith("a person's credentials")
    assert findings["scopes"].level == "fail" and "--client-id-file" in findings["scopes"].fix
    assert doctor.failed
    # the same login is fine for Cloud Storage exports
    assert _levels(Doctor("gee_doc", destination="asset").run())["scopes"] == "ok"


@pytest.mark.emulator(service_account_drive_quota_bytes=0)
def test_a_service_account_has_no_drive_storage(emulator, monkeypatch, triggerer):
    findings = {f.check: f for f in Doctor(_conn(monkeypatch, emulator.connection()), destination="drive").run()}
    assert findings["identity"].detail.startswith("service-account key")
    assert findings["drive"].level == "fail"
    assert "destination='gcs'" in findings["drive"].fix and "ee_credentials" in findings["drive"].fix


@pytest.mark.parametrize(
    ("slots", "include_deferred", "level", "words"),
    [
        (1, True, "fail", "fewer than EE's 2 concurrent exports"),
        (2, False, "fail", "does not count deferred tasks"),
        (None, True, "fail", "does not exist"),
        (5, True, "warn", "more than EE's 2 concurrent exports"),
        (2, True, "ok", "as many as EE's concurrent exports (2)"),
    ],
)
def test_the_pool_against_ees_concurrent_export_limit(
    emulator, monkeypatch, pool, triggerer, slots, include_deferred, level, words
):
    if slots is not None:
        pool(slots, include_deferred)
    conn_id = _conn(monkeypatch, emulator.connection())
    (finding,) = [f for f in Doctor(conn_id, pool=POOL).run() if f.check == "pool"]
    assert (finding.level, words in finding.detail) == (level, True), finding
    if level != "ok":
        assert "--include-deferred" in finding.fix


def test_no_triggerer_fails(emulator, monkeypatch):
    findings = {f.check: f for f in Doctor(_conn(monkeypatch, emulator.connection())).run()}
    assert findings["triggerer"].level == "fail" and "airflow triggerer" in findings["triggerer"].fix


def test_the_bucket_probe_creates_and_deletes_an_object(emulator, monkeypatch, gcs_url, triggerer):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    conn_id = _conn(monkeypatch, emulator.connection())
    bucket = storage.Client(project="p", credentials=AnonymousCredentials()).bucket("landing")
    bucket.blob("exports/someone-elses.tif").upload_from_string(b"not the doctor's")
    finding = {f.check: f for f in Doctor(conn_id, destination="gcs", bucket="landing", prefix="exports/").run()}
    assert finding["bucket"].level == "ok"
    assert [b.name for b in bucket.list_blobs()] == ["exports/someone-elses.tif"]  # the probe left nothing else
    requests_seen = emulator.stats()["requests"]
    assert "drive.about" not in requests_seen  # a gcs destination needs no Drive
    missing = {f.check: f for f in Doctor(conn_id, destination="gcs", bucket="no-such-bucket").run()}
    assert missing["bucket"].level == "fail" and "storage.objectAdmin" in missing["bucket"].fix


@pytest.mark.parametrize("identity", ["key", "adc", "ee", "impersonated", "external"])
def test_every_identity_is_named(emulator, monkeypatch, tmp_path, triggerer, identity):
    project = emulator.config.project
    conn = emulator.connection(user=identity in ("adc", "external"))
    if identity == "adc":
        (tmp_path / "adc.json").write_text(json.dumps(emulator.user_credentials(client="own")))
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "adc.json"))
    elif identity == "ee":
        conn = emulator.connection(user=True, ee_credentials=json.dumps(emulator.ee_credentials()))
    elif identity == "impersonated":
        conn["extra"]["impersonation_chain"] = f"exporter@{project}.iam.gserviceaccount.com"
    elif identity == "external":
        (tmp_path / "oidc").write_text("opaque-subject-token")
        conn["extra"]["credential_config_file"] = str(tmp_path / "wif.json")
        (tmp_path / "wif.json").write_text(json.dumps({
            "type": "external_account",
            "audience": "//iam.googleapis.com/locations/global/workforcePools/ci/providers/x",
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt", "token_url": f"{emulator.url}/v1/token",
            "service_account_impersonation_url":
                f"{emulator.url}/v1/projects/-/serviceAccounts/wif@{project}.iam.gserviceaccount.com:generateAccessToken",
            "credential_source": {"file": str(tmp_path / "oidc")},
        }))  # fmt: skip
    findings = {f.check: f for f in Doctor(_conn(monkeypatch, conn)).run()}
    expected = {
        "key": "service-account key: gee-emulator@", "adc": "a person's credentials",
        "ee": "EE credentials", "impersonated": f"impersonated service account: exporter@{project}",
        "external": f"external account (workload identity federation): wif@{project}",
    }[identity]  # fmt: skip
    assert findings["identity"].detail.startswith(expected), findings["identity"]
    assert [f.check for f in findings.values() if f.level == "fail"] == []


def test_the_metadata_servers_identity_is_named_by_the_command(emulator, tmp_path, triggerer):
    host = emulator.url.removeprefix("http://")
    env = {
        **{k: v for k, v in os.environ.items() if k != "GOOGLE_APPLICATION_CREDENTIALS"},
        "GCE_METADATA_HOST": host, "GCE_METADATA_IP": host, "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
        "AIRFLOW_CONN_GEE_VM": json.dumps(emulator.connection(user=True)),
    }  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "airflow_provider_gee.utils.doctor", "--conn-id", "gee_vm", "--destination", "drive"],
        env=env, capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr[-2000:]
    assert "OK    identity       metadata server" in done.stdout
    assert "FAIL  scopes         cloud-platform: no Drive scope" in done.stdout


def test_the_operator_runs_the_checks_and_defers_once_for_the_triggerer(emulator, monkeypatch, tmp_path):
    from airflow.providers.common.compat.sdk import TaskDeferred

    from airflow_provider_gee.operators.doctor import GeeDoctorOperator

    conn_id = _ee_user(emulator, monkeypatch, tmp_path)
    op = GeeDoctorOperator(task_id="doctor", gcp_conn_id=conn_id, destination="drive", triggerer_timeout=60)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({})
    assert deferred.value.timeout.total_seconds() == 60
    findings = deferred.value.kwargs["findings"]
    assert {f["check"] for f in findings} >= {"identity", "scopes", "registration", "drive"}
    assert "triggerer" not in {f["check"] for f in findings}  # no database in a task: the deferral checks it
    result = op.execute_complete({}, event=None, findings=findings)
    assert result[-1]["check"] == "triggerer" and result[-1]["level"] == "ok"
    admin(emulator, "config", {"registration_state": "NOT_REGISTERED"})
    failing = GeeDoctorOperator(task_id="doctor2", gcp_conn_id=conn_id, check_triggerer=False)
    with pytest.raises(GeeConfigurationError, match=r"registration: .* is not registered"):
        failing.execute({})
