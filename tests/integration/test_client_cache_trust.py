"""The ee client's document cache trusts only what this user wrote.

Threat (docs/guarantees.md, "Who can do what"): another user of the machine who can write into the
cache directory plants a discovery document whose ``algorithms.list`` URL points at their server;
``ee.Initialize`` would send the bearer token there. Each case runs a fresh task process (``ee`` is
process-global) against the emulator; a local HTTP server stands for the other user's and records
every request that reaches it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

INIT_SCRIPT = """
from airflow_provider_gee.hooks.earth_engine import EarthEngineHook
EarthEngineHook(gcp_conn_id="gee_test").initialize_ee()
import ee
print(ee.Number(40).add(2).getInfo())
"""


def init(cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "GEE_CLIENT_CACHE_DIR": str(cache)}
    return subprocess.run([sys.executable, "-c", INIT_SCRIPT], capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture
def documents(emulator, monkeypatch, tmp_path) -> dict[str, bytes]:
    """The cache entries one task process writes, by file name (the discovery document and the
    algorithm list)."""
    monkeypatch.setenv("AIRFLOW_CONN_GEE_TEST", json.dumps(emulator.connection()))
    done = init(tmp_path / "clean")
    assert done.returncode == 0, done.stderr[-2000:]
    entries = {p.name: p.read_bytes() for p in (tmp_path / "clean").glob("*.json")}
    assert len(entries) == 2 and sum(b"discoveryVersion" in v for v in entries.values()) == 1
    return entries


def poisoned(entries: dict[str, bytes], url: str) -> tuple[str, bytes]:
    """The discovery document's entry with ``algorithms.list`` at ``url``."""
    name, content = next((n, c) for n, c in entries.items() if b"discoveryVersion" in c)
    document = json.loads(content)
    stack, changed = [document], 0
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if str(node.get("id", "")).endswith("projects.algorithms.list"):
                node["path"] = node["flatPath"] = f"{url}/v1/projects/{{projectsId}}/algorithms"
                changed += 1
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    assert changed == 1
    return name, json.dumps(document).encode()


def plant(directory: Path, name: str, content: bytes, mode: int = 0o600) -> None:
    path = directory / name
    path.write_bytes(content)
    path.chmod(mode)


def test_a_world_writable_cache_directory_is_not_used(documents, token_server, tmp_path):
    url, hits = token_server
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    plant(shared, *poisoned(documents, url))
    done = init(shared)
    assert done.returncode == 0 and done.stdout.strip().endswith("42"), done.stderr[-2000:]
    assert hits == []
    assert "Not using the ee client's document cache" in done.stdout and "writable by other users" in done.stdout


def test_a_cached_discovery_document_whose_urls_leave_the_api_host_is_not_used(documents, token_server, tmp_path):
    url, hits = token_server
    own = tmp_path / "own"
    own.mkdir(mode=0o700)
    name, content = poisoned(documents, url)
    plant(own, name, content)
    done = init(own)
    assert done.returncode == 0 and done.stdout.strip().endswith("42"), done.stderr[-2000:]
    assert hits == []
    assert "is a URL of its own" in done.stdout
    assert (own / name).read_bytes() == documents[name]  # downloaded again, and the entry replaced


def test_a_cache_entry_others_may_write_is_fetched_again(documents, tmp_path, emulator):
    own = tmp_path / "own"
    own.mkdir(mode=0o700)
    for name, content in documents.items():
        plant(own, name, content, mode=0o666)
    before = emulator.stats()["requests"]["ee.discovery"]
    done = init(own)
    assert done.returncode == 0, done.stderr[-2000:]
    assert emulator.stats()["requests"]["ee.discovery"] > before
    assert all(not (p.stat().st_mode & 0o022) for p in own.glob("*.json"))  # replaced by its own


def test_in_a_shared_sticky_directory_each_user_keeps_a_cache_of_their_own(documents, token_server, tmp_path):
    url, hits = token_server
    shared = tmp_path / "tmp-like"
    shared.mkdir()
    shared.chmod(0o1777)
    name, content = poisoned(documents, url)
    plant(shared, name, content, mode=0o644)
    for _ in range(2):
        done = init(shared)
        assert done.returncode == 0 and done.stdout.strip().endswith("42"), done.stderr[-2000:]
    assert hits == []
    own = shared / f"uid-{os.getuid()}"
    assert sorted(p.name for p in own.glob("*.json")) == sorted(documents)
    assert own.stat().st_mode & 0o777 == 0o700
