"""The ``gee-emulator`` command as a user runs it: a separate process on a free port."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import requests

pytestmark = pytest.mark.integration


def start(*args: str, state_dir=None) -> tuple[subprocess.Popen, str, list[str]]:
    cmd = [sys.executable, "-m", "gee_emulator", "--port", "0", *args]
    if state_dir:
        cmd += ["--state-dir", str(state_dir)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline().strip()
    assert first.startswith("listening on http://"), first
    extra = [proc.stdout.readline().strip()] if "--print-connection" in args else []
    return proc, first.removeprefix("listening on "), extra


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0


def test_prints_its_url_and_a_ready_connection():
    proc, url, extra = start("--print-connection", "--project", "my-ee-project")
    try:
        assert requests.get(f"{url}/_emulator/health", timeout=5).json()["status"] == "ok"
        conn = json.loads(extra[0])
        assert conn["conn_type"] == "google_cloud_platform"
        assert conn["extra"]["api_url"] == url and conn["extra"]["project"] == "my-ee-project"
        key = json.loads(conn["extra"]["keyfile_dict"])
        assert key["token_uri"] == f"{url}/token" and key["type"] == "service_account"
    finally:
        stop(proc)


def test_refuses_a_non_loopback_host():
    result = subprocess.run(
        [sys.executable, "-m", "gee_emulator", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "loopback only" in result.stderr


def test_a_non_loopback_host_needs_require_auth(tmp_path):
    """Off loopback, the admin routes would hand the generated private key to anyone on the network."""
    result = subprocess.run(
        [sys.executable, "-m", "gee_emulator", "--host", "0.0.0.0", "--allow-remote", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "without require_auth / --require-auth" in result.stderr
    token_file = tmp_path / "admin.json"
    proc, url, _ = start("--host", "0.0.0.0", "--allow-remote", "--require-auth", "--admin-token-file", str(token_file))
    try:
        port = url.rsplit(":", 1)[1]
        assert requests.get(f"http://127.0.0.1:{port}/_emulator/connection", timeout=10).status_code == 401
    finally:
        stop(proc)


def test_state_dir_keeps_assets_and_drive_files_across_a_restart(tmp_path):
    proc, url, _ = start(state_dir=tmp_path)
    try:
        requests.post(
            f"{url}/_emulator/assets",
            json={"name": "projects/gee-emulator/assets/keep", "type": "FOLDER"},
            timeout=5,
        ).raise_for_status()
        seeded = requests.post(
            f"{url}/_emulator/drive/files", json={"folder": "f", "name": "a.bin", "size": 100}, timeout=5
        ).json()
    finally:
        stop(proc)
    proc, url, _ = start(state_dir=tmp_path)
    try:
        stats = requests.get(f"{url}/_emulator/stats", timeout=5).json()
        assert stats["assets"] == 1 and stats["drive_files"] == 1
        meta = requests.get(f"{url}/drive/v3/files/{seeded['id']}", timeout=5).json()
        assert meta["md5Checksum"] == seeded["md5Checksum"]
    finally:
        stop(proc)
    assert os.path.exists(tmp_path / "state.json")


def test_public_url_and_connection_file_for_containers(tmp_path):
    path = tmp_path / "connections.json"
    proc, url, _ = start("--public-url", "http://gee-emulator:8085", "--connection-file", str(path))
    try:
        assert url == "http://gee-emulator:8085"  # what clients in the container network use
        conn = json.loads(path.read_text())["google_cloud_default"]
        assert conn["extra"]["api_url"] == "http://gee-emulator:8085"
        assert json.loads(conn["extra"]["keyfile_dict"])["token_uri"] == "http://gee-emulator:8085/token"
        assert path.stat().st_mode & 0o777 == 0o600  # it holds the private key
    finally:
        stop(proc)


def test_admin_routes_demand_the_admin_token_when_auth_is_required(tmp_path):
    token_file = tmp_path / "admin.json"
    proc, url, _ = start("--require-auth", "--admin-token-file", str(token_file))
    try:
        assert token_file.stat().st_mode & 0o777 == 0o600
        token = json.loads(token_file.read_text())["admin_token"]
        assert requests.get(f"{url}/_emulator/health", timeout=10).status_code == 200  # for health checks
        for method, route, body in (("GET", "connection", None), ("POST", "keys", {"type": "service_account"}),
                                    ("POST", "reset", None), ("GET", "stats", None)):  # fmt: skip
            refused = requests.request(method, f"{url}/_emulator/{route}", json=body, timeout=10)
            assert refused.status_code == 401, route
            assert "admin token" in refused.json()["error"]["message"]
        conn = requests.get(f"{url}/_emulator/connection", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert conn.status_code == 200 and "keyfile_dict" in conn.json()["extra"]
    finally:
        stop(proc)


def test_writes_a_persons_credentials_and_a_connection_without_a_key(tmp_path):
    path = tmp_path / "adc.json"
    proc, url, extra = start("--print-connection", "--user", "--write-user-credentials", str(path))
    try:
        conn = json.loads(extra[0])
        assert "keyfile_dict" not in conn["extra"] and conn["extra"]["api_url"] == url
        creds = json.loads(path.read_text())
        assert creds["type"] == "authorized_user" and creds["refresh_token"] and creds["token"]
        assert os.stat(path).st_mode & 0o777 == 0o600  # a credential: its owner's only
        # the refresh_token grant, as a client that refreshes against the emulator sends it
        form = {k: creds[k] for k in ("refresh_token", "client_id", "client_secret")}
        token = requests.post(f"{url}/token", data={"grant_type": "refresh_token", **form}, timeout=10).json()
        assert token["access_token"].startswith("emu-") and "earthengine" in token["scope"]
    finally:
        stop(proc)


def test_writes_ee_credentials_and_a_connection_that_names_them(tmp_path, monkeypatch):
    path = tmp_path / "credentials"
    options = ("--project", "ee-user-project", "--registration-state", "REGISTERED_COMMERCIALLY")
    proc, _url, extra = start("--print-connection", "--user", "--write-ee-credentials", str(path), *options)
    try:
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        stored = json.loads(path.read_text())
        assert set(stored) == {"refresh_token", "scopes", "project"}  # what `earthengine authenticate` writes
        assert stored["project"] == "ee-user-project" and "https://www.googleapis.com/auth/drive" in stored["scopes"]
        conn = json.loads(extra[0])
        assert conn["extra"]["ee_credentials"] == str(path) and "keyfile_dict" not in conn["extra"]
        monkeypatch.setenv("AIRFLOW_CONN_GEE_CLI_EE", json.dumps(conn))
        from airflow_provider_gee.hooks.earth_engine import EarthEngineHook

        hook = EarthEngineHook(gcp_conn_id="gee_cli_ee")
        assert hook.token_info()["email"] == "analyst@example.com"
        assert hook.project_config()["registrationState"] == "REGISTERED_COMMERCIALLY"
    finally:
        stop(proc)


def test_a_gcloud_login_has_no_drive_scope_unless_the_client_is_ones_own(tmp_path):
    for client, has_drive in (("gcloud", False), ("own", True)):
        path = tmp_path / f"adc-{client}.json"
        proc, _url, _extra = start("--write-user-credentials", str(path), "--oauth-client", client)
        try:
            scopes = json.loads(path.read_text())["scopes"]
            assert ("https://www.googleapis.com/auth/drive" in scopes) is has_drive
        finally:
            stop(proc)
