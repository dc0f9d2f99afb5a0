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

What is cached steers where ``ee`` sends its bearer token (a discovery document names the URL of
every method), so the cache trusts only what this user wrote: a directory owned by the user and
writable by no one else (inside a shared, sticky directory such as ``/tmp``, a ``uid-<uid>``
directory of the user's own), entries owned by the user and writable by no one else, and
discovery documents whose URLs stay on the host they were fetched from. Anything else is not
used: the documents are downloaded, and a warning says why.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

log = logging.getLogger(__name__)

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


_DISCOVERY = re.compile(r"/\$discovery/rest(\?|$)")
#: discovery-document keys of method paths, which googleapiclient appends to the base URL
_PATH_KEYS = ("path", "flatPath")


def _writable_by_others(mode: int) -> bool:
    return bool(mode & (stat.S_IWGRP | stat.S_IWOTH))


def private_dir(directory: Path) -> tuple[Path | None, str]:
    """The directory this user's cache may live in, made if missing, and ``""``; or ``None`` and
    why not. ``directory`` itself when the user owns it and no one else may write into it; a
    ``uid-<uid>`` directory inside it when it is a shared, sticky directory (as ``/tmp``), where
    others cannot remove or rename what the user made."""
    uid = os.getuid()
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = directory.lstat()
    except OSError as exc:
        return None, f"{directory} cannot be made: {exc}"
    if not stat.S_ISDIR(info.st_mode):
        return None, f"{directory} is not a directory (a symlink?)"
    if info.st_uid == uid and not _writable_by_others(info.st_mode):
        return directory, ""
    if not info.st_mode & stat.S_ISVTX:
        return None, (
            f"{directory} is writable by other users (mode {stat.filemode(info.st_mode)}, owner uid {info.st_uid}) "
            "and not sticky: anyone could plant documents there"
        )
    own = directory / f"uid-{uid}"
    try:
        own.mkdir(exist_ok=True, mode=0o700)
        info = own.lstat()
    except OSError as exc:
        return None, f"{own} cannot be made: {exc}"
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid or _writable_by_others(info.st_mode):
        return None, f"{own} was made by someone else (owner uid {info.st_uid}, mode {stat.filemode(info.st_mode)})"
    return own, ""


def _host(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def discovery_problem(uri: str, content: bytes) -> str | None:
    """Why a cached discovery document fetched from ``uri`` must not be used, or ``None``.

    Every URL googleapiclient builds from it must stay on ``uri``'s host: the base URL
    (``urljoin(rootUrl, servicePath)``, as ``discovery.build_from_document`` joins them, blanks
    and all), the batch URL (``rootUrl + batchPath``), the mTLS base (on the host's mTLS twin) and
    every method path, which googleapiclient appends to the base unless it is a URL of its own."""
    try:
        document = json.loads(content)
    except ValueError:
        return "not JSON"
    if not isinstance(document, dict):
        return "not a discovery document"
    home = _host(uri)
    root, service_path = document.get("rootUrl"), document.get("servicePath", "")
    if not isinstance(root, str) or not isinstance(service_path, str) or not root.endswith("/"):
        return f"rootUrl {root!r} / servicePath {service_path!r} are not a URL ending in / and a path"
    built = {
        "rootUrl": root,
        "base URL": urljoin(root, service_path),
        "batch URL": root + str(document.get("batchPath", "batch")),
    }
    if "baseUrl" in document:
        built["baseUrl"] = str(document["baseUrl"])
    for what, url in built.items():
        if _host(url) != home:
            return f"its {what} {url!r} leaves {home}"
    if "mtlsRootUrl" in document:
        mtls = urljoin(str(document["mtlsRootUrl"]), service_path)
        if _host(mtls) not in (home, home.replace(".googleapis.com", ".mtls.googleapis.com")):
            return f"its mTLS base URL {mtls!r} leaves {home}"
    stack: list[Any] = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key in _PATH_KEYS and isinstance(value, str):
                    # googleapiclient appends a path to the base, unless it starts like a URL
                    if "://" in "".join(value.split()):  # urljoin drops blanks: so does the check
                        return f"{key} {value!r} is a URL of its own"
                elif not isinstance(value, str):
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
    return None


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
        self.hits = 0
        self.misses = 0
        self.directory: Path | None = None
        if ttl_seconds > 0:
            self.directory, why = private_dir(directory or cache_dir())
            if self.directory is None:
                log.warning("Not using the ee client's document cache: %s. Set GEE_CLIENT_CACHE_DIR to a private "
                            "directory.", why)  # fmt: skip

    def _path(self, uri: str) -> Path:
        return Path(str(self.directory)) / f"{hashlib.sha256(uri.encode()).hexdigest()}.json"

    def _fresh(self, path: Path, uri: str) -> bytes | None:
        try:
            # no symlink followed, and a FIFO planted at the name cannot block the task
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return None
        with os.fdopen(fd, "rb") as fh:
            info = os.fstat(fh.fileno())
            # an entry this user did not write, or one others could rewrite, steers the token elsewhere
            if info.st_uid != os.getuid() or _writable_by_others(info.st_mode) or not stat.S_ISREG(info.st_mode):
                mode = stat.filemode(info.st_mode)
                log.warning("Not using cached %s: owner uid %d, mode %s", path, info.st_uid, mode)
                return None
            if time.time() - info.st_mtime > self.ttl_seconds:
                return None
            content = fh.read()
        # a document is JSON: anything else (a torn or foreign file) is fetched again
        if not (content[:1] == b"{" and content.rstrip()[-1:] == b"}"):
            return None
        problem = discovery_problem(uri, content) if _DISCOVERY.search(uri) else None
        if problem:
            log.warning("Not using cached discovery document %s: %s", path, problem)
            return None
        return content

    def _store(self, path: Path, content: bytes) -> None:
        try:
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

            # never through a symlink planted at the lock's name
            lock_fd = os.open(
                path.with_suffix(".lock"), os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o600
            )
            lock = os.fdopen(lock_fd, "a")
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
        if method != "GET" or self.ttl_seconds <= 0 or self.directory is None or not _CACHED.search(uri):
            return self._inner.request(uri, method, body=body, headers=headers)
        path = self._path(uri)
        content = self._fresh(path, uri)
        if content is not None:
            return self._hit(content)
        with self._fetching(path):
            content = self._fresh(path, uri)  # fetched by another process while this one waited
            if content is not None:
                return self._hit(content)
            self.misses += 1
            response, content = self._inner.request(uri, method, body=body, headers=headers)
            if int(response.status) == 200 and isinstance(content, bytes):
                self._store(path, content)
        return response, content
