"""The deployment we recommend, on this machine's own services: its Airflow settings (one file,
``docker/deployment.env``, that the compose file also reads), a PostgreSQL database and a Redis
database index of a test's own, created and removed around it, never touching anything else there.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS_FILE = ROOT / "docker" / "deployment.env"

POSTGRES = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
REDIS = {"host": "127.0.0.1", "port": 6379}


def deployment_settings(path: Path = SETTINGS_FILE) -> dict[str, str]:
    """``KEY=VALUE`` lines of the settings file (comments and blank lines skipped)."""
    settings = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"{path}: not KEY=VALUE: {line!r}")
        settings[key.strip()] = value.strip()
    return settings


def _postgres_up() -> bool:
    import psycopg2

    try:
        psycopg2.connect(dbname="postgres", connect_timeout=3, **POSTGRES).close()
        return True
    except psycopg2.OperationalError:
        return False


def _redis_up() -> bool:
    import redis

    try:
        return bool(redis.Redis(socket_connect_timeout=3, **REDIS).ping())
    except redis.RedisError:
        return False


def ensure_services() -> None:
    """Start the machine's PostgreSQL cluster or Redis server if one is found stopped."""
    if not _postgres_up():
        clusters = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=True).stdout
        for line in clusters.splitlines():
            version, name = line.split()[:2]
            subprocess.run(["pg_ctlcluster", version, name, "start"], check=False)
        _wait(_postgres_up, "PostgreSQL")
    if not _redis_up():
        server = shutil.which("redis-server") or "redis-server"
        subprocess.run([server, "--daemonize", "yes", "--port", str(REDIS["port"])], check=True)
        _wait(_redis_up, "Redis")


def _wait(check, what: str, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not come up within {timeout} s")
        time.sleep(1)


@contextmanager
def postgres_database(prefix: str = "gee_airflow") -> Iterator[str]:
    """A new database (its SQLAlchemy URL), dropped afterwards with every connection to it."""
    import psycopg2

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(dbname="postgres", **POSTGRES)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        yield f"postgresql+psycopg2://{POSTGRES['user']}@{POSTGRES['host']}:{POSTGRES['port']}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@contextmanager
def redis_database() -> Iterator[str]:
    """A Redis database index nobody uses (no keys; claimed with a marker key), as a URL;
    flushed afterwards (that index only)."""
    import redis

    claim = f"gee-test-claim-{uuid.uuid4().hex}"
    for index in range(15, 0, -1):  # 0 is everyone's default: never used
        client = redis.Redis(db=index, **REDIS)
        if client.dbsize() == 0 and client.set(claim, "1", nx=True):
            if client.dbsize() == 1:  # nobody else claimed it at the same moment
                break
            client.delete(claim)
    else:
        raise RuntimeError("No free Redis database index (1-15) on this server.")
    try:
        yield f"redis://{REDIS['host']}:{REDIS['port']}/{index}"
    finally:
        client.flushdb()
        client.close()
