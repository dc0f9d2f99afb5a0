"""A per-machine cache of the two documents ``ee.Initialize`` downloads: EE's discovery document
(fetched twice, for the JSON and the raw API resources) and its algorithm list.

Every task process that builds an EE object initializes the ``ee`` client; without a cache each
export costs three large GETs (hundreds of kB) before its own request. The cache is a directory of
files written atomically (a temporary file, then ``os.replace``), so task processes of any number
of workers on a machine share it safely; an entry older than its time to live, unreadable or
damaged is fetched again, by one process at a time (a lock file per entry): the tasks that start
together on a cold or expired cache wait for one download instead of each making their own. It is
plugged in through ``ee.Initialize(http_transport=...)``, the client's own extension point; every
other request passes through unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: requests whose answers are cached: the discovery document and the algorithm list
_CACHED = re.compile(r"(/\$discovery/rest|/v1[a-z0-9]*/projects/[^/]+/algorithms)(\?|$)")
DEFAULT_TTL_SECONDS = 3600.0


def cache_dir() -> Path:
    """``$GEE_CLIENT_CACHE_DIR``, else ``$XDG_CACHE_HOME/airflow-provider-gee`` (``~/.cache``)."""
    configured = os.environ.get("GEE_CLIENT_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "airflow-provider-gee"


class CachingTransport:
    """An httplib2-style transport (what ``ee`` and googleapiclient call) that answers the
    discovery and algorithm-list GETs from the cache while fresh, and passes everything else to
    the ``ee`` client's own transport.

    :param ttl_seconds: how long a cached document is used; 0 turns the cache off.
    :param directory: where the documents are kept (default :func:`cache_dir`).
    """

    def __init__(self, ttl_seconds: float = DEFAULT_TTL_SECONDS, directory: Path | None = None) -> None:
        import requests
        from ee import _cloud_api_utils

        # the transport ee builds when none is given (requests-based, httplib2 semantics)
        self._inner = _cloud_api_utils._Http(requests.Session())
        self.ttl_seconds = ttl_seconds
        self.directory = directory or cache_dir()
        self.hits = 0
        self.misses = 0

    def _path(self, uri: str) -> Path:
        return self.directory / f"{hashlib.sha256(uri.encode()).hexdigest()}.json"

    def _fresh(self, path: Path) -> bytes | None:
        try:
            if time.time() - path.stat().st_mtime > self.ttl_seconds:
                return None
            content = path.read_bytes()
        except OSError:
            return None
        # a document is JSON: anything else (a torn or foreign file) is fetched again
        return content if content[:1] == b"{" and content.rstrip()[-1:] == b"}" else None

    def _store(self, path: Path, content: bytes) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, temp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".json")
            with os.fdopen(fd, "wb") as fh:
                fh.write(content)
            os.replace(temp, path)  # atomic: readers see the old file or the new one, never half
        except OSError:
            pass  # an unwritable cache only costs the next process a download

    def _hit(self, content: bytes) -> tuple[Any, bytes]:
        import httplib2

        self.hits += 1
        return httplib2.Response({"status": 200, "content-type": "application/json; charset=UTF-8"}), content

    @contextlib.contextmanager
    def _fetching(self, path: Path) -> Iterator[None]:
        """Hold the entry's lock file (``flock``, released when the process dies): one process of
        the machine fetches it while the others wait. Without a usable directory, no lock."""
        try:
            import fcntl

            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            lock = open(path.with_suffix(".lock"), "a")  # noqa: SIM115 - held across the yield
        except (ImportError, OSError):
            yield
            return
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def request(
        self,
        uri: str,
        method: str = "GET",
        body: Any = None,
        headers: dict[str, str] | None = None,
        redirections: Any = None,
        connection_type: Any = None,
    ) -> tuple[Any, Any]:
        if method != "GET" or self.ttl_seconds <= 0 or not _CACHED.search(uri):
            return self._inner.request(uri, method, body=body, headers=headers)
        path = self._path(uri)
        content = self._fresh(path)
        if content is not None:
            return self._hit(content)
        with self._fetching(path):
            content = self._fresh(path)  # fetched by another process while this one waited
            if content is not None:
                return self._hit(content)
            self.misses += 1
            response, content = self._inner.request(uri, method, body=body, headers=headers)
            if int(response.status) == 200 and isinstance(content, bytes):
                self._store(path, content)
        return response, content
