"""The names a run gives to things outside Airflow, and what keys them.

Several runs of one DAG run at once (``max_active_runs``, backfills, a manual run beside a
scheduled one), several Airflow deployments may share one EE identity, and a run's tiling can be
cleared and run again with another region. So every name a run gives to something outside Airflow
is unique to its deployment, DAG and run (and tile, and part), and stays readable:

- :func:`deployment_id`: what tells two Airflow deployments apart (``[gee] deployment_id``);
- :func:`run_token`: a short token of deployment, DAG and run, added to every output name
  (Drive/Cloud Storage file prefix, asset id, EE task description) unless the name already holds
  ``{run_token}`` where the user wants it;
- :func:`request_id`: EE's ``requestId``, from the deployment, the task instance, the tile and a
  fingerprint of the export's arguments (:func:`export_fingerprint`), so that a stored EE task is
  found again only by the export that started it;
- :data:`PART_SEPARATOR`: the suffix reserved for the parts of a split tile.

Standard library only: the operator modules import this when a DAG file is parsed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from functools import lru_cache
from typing import Any

#: the namespace of every requestId the provider derives (with the deployment mixed in)
_REQUEST_NAMESPACE = uuid.UUID("8f0a3c4e-5b7d-4c1e-9a2f-6d3b1e0c7a55")
_DESCRIPTION_BAD = re.compile(r"[^A-Za-z0-9.,:;_-]")
#: EE's limit on a task description
MAX_DESCRIPTION = 100
#: the placeholder a name template may hold to say where the run's token goes
RUN_TOKEN = "{run_token}"
#: the part ids of a split tile are ``<tile_id>_q0`` .. ``_q3`` (and ``_q0_q3`` a level deeper)
PART_SEPARATOR = "_q"
_PART_ID = re.compile(r"_q[0-3]$")
#: EE names the parts of a sharded GeoTIFF ``<prefix>-RRRRRRRRRR-CCCCCCCCCC.tif``
_SHARD_ID = re.compile(r"-\d{10}-\d{10}$")
#: characters a tile id may hold: it names descriptions, files and asset ids
_TILE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def sanitize_description(text: str, limit: int = MAX_DESCRIPTION) -> str:
    """A description EE accepts: only ``A-Za-z0-9.,:;_-`` and at most ``limit`` (100) characters.
    A shortened description keeps a hash of the whole, so two long descriptions stay distinct."""
    clean = _DESCRIPTION_BAD.sub("_", text)
    if len(clean) <= limit:
        return clean
    digest = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:8]
    return f"{clean[: limit - 9]}-{digest}"


def scoped_description(text: str, token: str, sep: str, tail: str = "") -> str:
    """A description with the run's token that EE accepts: ``text``, ``sep``, the token, ``tail``
    (a split part's suffix). A long ``text`` is shortened, never the token (a budget and a retry
    find the run's EE tasks by it); ``{run_token}`` in ``text`` puts the token there instead (then
    kept unless the description must be shortened)."""
    if RUN_TOKEN in text:
        return sanitize_description(text.replace(RUN_TOKEN, token), MAX_DESCRIPTION - len(tail)) + tail
    if not token:
        return sanitize_description(text, MAX_DESCRIPTION - len(tail)) + tail
    return f"{sanitize_description(text, MAX_DESCRIPTION - len(sep) - len(token) - len(tail))}{sep}{token}{tail}"


def description_problem(text: str) -> str | None:
    """Why EE would refuse ``text`` as a task description, or ``None``."""
    if not text or len(text) > MAX_DESCRIPTION or _DESCRIPTION_BAD.search(text):
        return f"EE allows 1-{MAX_DESCRIPTION} characters of A-Z a-z 0-9 . , : ; _ -"
    return None


@lru_cache(maxsize=1)
def deployment_id() -> str:
    """What tells this Airflow deployment apart from another that shares the EE identity.

    ``[gee] deployment_id`` (``AIRFLOW__GEE__DEPLOYMENT_ID``) when set: give staging and
    production different values, and every component of one deployment the same one. Without it,
    a digest of the execution API's URL (``[core] execution_api_server_url``), which every task
    process of one deployment must reach and two deployments on different hosts or ports do not
    share. (The metadata database's URL would tell more, but Airflow 3 hides it from task
    processes.) Two deployments whose execution API URLs read the same (two copies of one compose
    file) must set it. It never changes for a deployment: a retry must find its EE task and files
    again.
    """
    from airflow.configuration import conf

    configured = (conf.get("gee", "deployment_id", fallback="") or "").strip()
    if configured:
        return configured
    # resolved as Airflow's executors resolve it (airflow.executors.base_executor), so every
    # spelling of one server gives one id
    base = conf.get("api", "base_url", fallback="/") or "/"
    if base.startswith("/"):
        base = f"http://localhost:8080{base}"
    url = conf.get("core", "execution_api_server_url", fallback="") or f"{base.rstrip('/')}/execution/"
    url = url.strip().rstrip("/").lower()
    logging.getLogger(__name__).warning(
        "[gee] deployment_id is not set: using a digest of the execution API's URL (%s). Set it "
        "(AIRFLOW__GEE__DEPLOYMENT_ID) on every component, different for each deployment that shares an EE identity.",
        url,
    )
    return "api-" + hashlib.sha256(url.encode()).hexdigest()[:16]


def run_token(dag_id: str, run_id: str, deployment: str | None = None) -> str:
    """Eight hex characters unique (in practice) to one deployment, DAG and run: the same for
    every task and try of the run, different for another run or deployment."""
    deployment = deployment_id() if deployment is None else deployment
    return hashlib.sha256(f"{deployment}\x1f{dag_id}\x1f{run_id}".encode()).hexdigest()[:8]


def scoped_name(text: str, token: str, sep: str = "_") -> str:
    """``text`` with the run's token where it says ``{run_token}``, else appended with ``sep``."""
    if RUN_TOKEN in text:
        return text.replace(RUN_TOKEN, token)
    return f"{text}{sep}{token}"


def request_id(
    dag_id: str,
    task_id: str,
    run_id: str,
    map_index: int | None,
    generation: int,
    part: str = "",
    *,
    tile_id: str = "",
    fingerprint: str = "",
    deployment: str | None = None,
) -> str:
    """EE's ``requestId`` for one export: deployment, task instance, tile, the export's arguments'
    fingerprint, part of a split tile (``_q0_q3``; none: the whole tile) and generation
    (``[A-Za-z0-9-]``, 39 characters; EE allows 60).

    EE starts at most one operation per requestId and caller: a requestId that another
    deployment, another tile at this map index (a re-run tiling) or other export arguments could
    also compute would hand back their EE task.
    """
    deployment = deployment_id() if deployment is None else deployment
    fields = [deployment, dag_id, task_id, run_id, str(map_index), tile_id, fingerprint, part]
    return f"{uuid.uuid5(_REQUEST_NAMESPACE, chr(31).join(fields))}-g{generation}"


def export_fingerprint(settings: dict[str, Any]) -> str:
    """A digest of what an export writes and where (region, scale, CRS, destination, names,
    options): stored with its EE task and split plan, which are used again only when it matches.
    Values that are not JSON (an ``ee.Geometry``) count by their text."""
    text = json.dumps(settings, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def tile_id_problem(tile_id: str) -> str | None:
    """Why ``tile_id`` cannot name a tile's outputs, or ``None``: ids are letters, digits, ``_``
    and ``-`` (they name descriptions, files and asset ids), and may not end like a part of a
    split tile (``_q0`` .. ``_q3``), whose names they would share."""
    if not _TILE_ID.fullmatch(tile_id):
        return "a tile id is 1-64 characters of A-Z a-z 0-9 _ -"
    if _PART_ID.search(tile_id):
        return f"ids ending in {PART_SEPARATOR}0 .. {PART_SEPARATOR}3 are reserved for the parts of split tiles"
    if _SHARD_ID.search(tile_id):
        return "ids ending in -<10 digits>-<10 digits> are how EE names the parts of a sharded file"
    return None


#: ``ee.data.setWorkloadTag``'s rule: 1-63 characters, alphanumeric at both ends, ``-_.`` between
_WORKLOAD_TAG = re.compile(r"[a-zA-Z0-9](?:[-_.a-zA-Z0-9]{0,61}[a-zA-Z0-9])?")
MAX_WORKLOAD_TAG = 63


def workload_tag_problem(tag: str) -> str | None:
    """What is wrong with a workload tag by EE's rule, or ``None``."""
    if _WORKLOAD_TAG.fullmatch(tag):
        return None
    return (
        "a workload tag is 1-63 characters, beginning and ending with a letter or digit, with letters, digits, "
        "'-', '_' and '.' between"
    )


def default_workload_tag(dag_id: str, task_id: str) -> str:
    """``<dag_id>.<task_id>`` within EE's workload-tag rule (other characters become ``-``; a name
    too long keeps its start and a digest of the whole, so that two long names stay apart): the
    tag EE's usage reports (Cloud Monitoring's ``workload_tag`` label) attribute a task's EECU to."""
    text = re.sub(r"[^-_.a-zA-Z0-9]", "-", f"{dag_id}.{task_id}")
    if len(text) > MAX_WORKLOAD_TAG:
        digest = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:8]
        text = f"{text[: MAX_WORKLOAD_TAG - 9]}-{digest}"
    text = re.sub(r"^[^a-zA-Z0-9]+|[^a-zA-Z0-9]+$", "", text)
    return text or "airflow"
