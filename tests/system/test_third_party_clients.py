"""A client nobody here wrote, unchanged, against the emulator: geetools' ``ee.Asset`` (a
pathlib-like asset API that feeds each listed ``id`` back as a parent, so it breaks on any server
whose ids are not EE's). It runs in a virtualenv of its own (requirements/clients.txt, with our
constraints), talking to an emulator run by this test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_PROJECT
from tests.helpers import admin

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / "build" / "clients"
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1200)]

SCRIPT = r"""
import json, sys
import ee
import geetools  # noqa: F401  (registers ee.Asset)
from google.oauth2 import service_account

cfg = json.loads(sys.argv[1])
scopes = ["https://www.googleapis.com/auth/earthengine", "https://www.googleapis.com/auth/cloud-platform"]
credentials = service_account.Credentials.from_service_account_info(cfg["key"], scopes=scopes)
ee.data.setMaxRetries(1)
ee.Initialize(credentials=credentials, project=cfg["project"], url=cfg["url"])
tree = ee.Asset(f"projects/{cfg['project']}/assets/tree")
made = ee.Asset(f"projects/{cfg['project']}/assets/tree/made/deeper").mkdir(parents=True)
print(json.dumps({
    "recursive": sorted(a.as_posix() for a in tree.iterdir(recursive=True)),
    "children": sorted(a.as_posix() for a in tree.iterdir()),
    "project": sorted(a.as_posix() for a in ee.Asset(f"projects/{cfg['project']}/assets").iterdir()),
    "is_folder": tree.is_folder(),
    "table_exists": (tree / "a" / "t").exists(),
    "missing_exists": (tree / "missing").exists(),
    "made": made.is_folder(),
}))
"""


@pytest.fixture(scope="module")
def client_python() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-r", str(ROOT / "requirements" / "clients.txt"), "-c", str(ROOT / "requirements" / "constraints.txt")],
        check=True, capture_output=True, timeout=900,
    )  # fmt: skip
    return python


def test_geetools_asset_api_walks_and_builds_folders(client_python, emulator):
    root = f"projects/{TEST_PROJECT}/assets/tree"
    for folder in ("", "/a", "/a/b"):
        admin(emulator, "assets", {"name": root + folder, "type": "FOLDER"})
    admin(emulator, "assets", {"name": f"{root}/a/t", "type": "TABLE", "features": []})
    admin(emulator, "assets", {"name": f"{root}/a/b/u", "type": "TABLE", "features": []})
    cfg = {"key": emulator.service_account_key, "project": TEST_PROJECT, "url": emulator.url}
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}
    done = subprocess.run([str(client_python), "-c", SCRIPT, json.dumps(cfg)], capture_output=True, text=True,
                          timeout=300, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["recursive"] == sorted(
        [f"{root}/a", f"{root}/a/b", f"{root}/a/b/u", f"{root}/a/t", f"{root}/made", f"{root}/made/deeper"]
    )
    assert result["children"] == [f"{root}/a", f"{root}/made"]
    assert result["project"] == [root]
    assert result["is_folder"] and result["table_exists"] and not result["missing_exists"] and result["made"]
