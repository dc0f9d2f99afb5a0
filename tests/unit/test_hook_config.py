"""What EarthEngineHook and DriveHook read from the connection and the environment."""

from __future__ import annotations

import json

import pytest

from airflow_provider_gee.exceptions import GeeConfigurationError
from airflow_provider_gee.hooks.drive import DriveHook
from airflow_provider_gee.hooks.earth_engine import EarthEngineHook


def set_conn(monkeypatch, conn_id="gee_unit", **extra):
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "google_cloud_platform", "extra": extra})
    )
    return conn_id


def test_endpoints_default_to_google_and_follow_the_connection(monkeypatch):
    monkeypatch.delenv("GEE_API_URL", raising=False)
    monkeypatch.delenv("GEE_DRIVE_API_URL", raising=False)
    hook = EarthEngineHook(gcp_conn_id=set_conn(monkeypatch, project="my-project-1"))
    assert hook.api_url == "https://earthengine.googleapis.com" and hook.drive_api_url is None
    hook = EarthEngineHook(gcp_conn_id=set_conn(monkeypatch, api_url="http://127.0.0.1:9/"))
    assert hook.api_url == "http://127.0.0.1:9" and hook.drive_api_url == "http://127.0.0.1:9/drive/v3/"
    monkeypatch.setenv("GEE_API_URL", "http://127.0.0.1:7")
    monkeypatch.setenv("GEE_DRIVE_API_URL", "http://127.0.0.1:8/drive/v3")
    drive = DriveHook(gcp_conn_id=set_conn(monkeypatch))
    assert drive.api_url == "http://127.0.0.1:7" and drive.drive_api_url == "http://127.0.0.1:8/drive/v3/"
    assert drive.get_client_options().api_endpoint == "http://127.0.0.1:8/drive/v3/"


def test_default_scopes_include_earth_engine_and_drive(monkeypatch):
    hook = EarthEngineHook(gcp_conn_id=set_conn(monkeypatch))
    assert "https://www.googleapis.com/auth/earthengine" in hook.scopes
    assert "https://www.googleapis.com/auth/drive" in hook.scopes
    hook = EarthEngineHook(gcp_conn_id=set_conn(monkeypatch, scope="a, b"))
    assert hook.scopes == ["a", "b"]


def test_asset_names(monkeypatch):
    hook = EarthEngineHook(gcp_conn_id=set_conn(monkeypatch), project="my-project-1")
    assert hook.asset_name("folder/t") == "projects/my-project-1/assets/folder/t"
    assert hook.asset_name("projects/other-proj/assets/x/") == "projects/other-proj/assets/x"
    assert hook.asset_name("users/me/x") == "projects/earthengine-legacy/assets/users/me/x"
    with pytest.raises(GeeConfigurationError, match="not of the form"):
        hook.asset_name("projects/p/tables/x")
    with pytest.raises(GeeConfigurationError, match="empty asset id"):
        hook.asset_name(" ")


def test_invalid_project_ids_are_refused_before_any_request(monkeypatch):
    hook = EarthEngineHook(gcp_conn_id=set_conn(monkeypatch), project="demo")
    with pytest.raises(GeeConfigurationError, match=r"'demo'.*not a valid Cloud project id"):
        _ = hook.project


@pytest.mark.parametrize("project", ["my-project-1", "123456789012", "example.com:my-project"])
def test_project_numbers_and_domain_scoped_ids_are_valid_projects(monkeypatch, project):
    assert EarthEngineHook(gcp_conn_id=set_conn(monkeypatch), project=project).project == project
