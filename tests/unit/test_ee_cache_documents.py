"""A cached discovery document is used only if every URL googleapiclient builds from it stays on
the API host it was fetched from (blanks and all, as ``urljoin`` drops them)."""

from __future__ import annotations

import copy
import json

import pytest

from airflow_provider_gee.utils.ee_cache import discovery_problem

URI = "https://earthengine.googleapis.com/$discovery/rest?version=v1"
DOCUMENT = {
    "rootUrl": "https://earthengine.googleapis.com/",
    "mtlsRootUrl": "https://earthengine.mtls.googleapis.com/",
    "servicePath": "",
    "batchPath": "batch",
    "resources": {"projects": {"resources": {"algorithms": {"methods": {"list": {
        "id": "earthengine.projects.algorithms.list",
        "path": "v1/{+parent}/algorithms",
        "flatPath": "v1/projects/{projectsId}/algorithms",
    }}}}}},
}  # fmt: skip


def problem(**changes) -> str | None:
    document = copy.deepcopy(DOCUMENT)
    method = document["resources"]["projects"]["resources"]["algorithms"]["methods"]["list"]
    for key, value in changes.items():
        (method if key in ("path", "flatPath") else document)[key] = value
    return discovery_problem(URI, json.dumps(document).encode())


def test_googles_own_shape_is_used():
    assert problem() is None
    assert discovery_problem("http://127.0.0.1:8085/$discovery/rest", b"[]") == "not a discovery document"


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"rootUrl": "https://evil.example/"}, "rootUrl 'https://evil.example/' leaves"),
        ({"rootUrl": "https://earthengine.googleapis.com@evil.example/"}, "leaves"),
        ({"servicePath": "//evil.example/"}, "base URL 'https://evil.example/' leaves"),
        ({"servicePath": " //evil.example/"}, "base URL 'https://evil.example/' leaves"),
        ({"servicePath": "\n//evil.example/"}, "base URL 'https://evil.example/' leaves"),
        ({"servicePath": "/\t/evil.example/"}, "base URL 'https://evil.example/' leaves"),
        ({"rootUrl": "https://earthengine.googleapis.com", "batchPath": ".evil.example/b"}, "not a URL ending in /"),
        ({"baseUrl": "https://evil.example/"}, "baseUrl 'https://evil.example/' leaves"),
        ({"mtlsRootUrl": "https://evil.example/"}, "mTLS base URL"),
        ({"path": "https://evil.example/v1/{+parent}/algorithms"}, "is a URL of its own"),
        ({"flatPath": "HTTPS:\t//evil.example/x"}, "is a URL of its own"),
    ],
)
def test_a_url_off_the_api_host_is_refused(changes, why):
    found = problem(**changes)
    assert found is not None and why in found, found
