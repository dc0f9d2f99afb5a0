"""Airflow Assets for the data the operators write: their URIs, and the extras of their events.

The harvest, merge, mosaic and table-stitch operators write data that other DAGs use. As every
Airflow operator, they emit an asset event for each Asset in their ``outlets`` when they succeed;
these helpers give the events what a downstream DAG needs (where the data is, how many tiles,
files and bytes) and, for a destination that is not a template, declare it as the default outlet.

URIs follow Airflow's asset URI rules: local paths become ``file://`` URIs, object-storage URLs
(``gs://``, ``s3://``, ``file://``) stay as they are, and Earth Engine assets, which no Airflow
provider defines a scheme for, use the ``x-earthengine://<project>/<asset path>`` scheme (Airflow
leaves schemes that start with ``x-`` to their owner).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

EE_ASSET_SCHEME = "x-earthengine"


def is_template(value: Any) -> bool:
    """Whether ``value`` is (or holds) a Jinja template: known only when the task runs."""
    return not isinstance(value, str) or "{{" in value or "{%" in value


def redact_url(url: str) -> str:
    """``url`` as it may be shown (logs, lineage, asset events): a password in its userinfo, a
    query string and a fragment (signed URLs, keys) become ``***``; so does all userinfo of an
    http(s) URL (a token). An object store's ``scheme://conn_id@bucket`` keeps the Airflow
    connection id, which is no secret. Text that is not a URL is returned as it is."""
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:  # not parseable (e.g. an unclosed IPv6 bracket): nothing after the scheme is shown
        return url.split("://", 1)[0] + "://***"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        keep = ":" not in userinfo and parts.scheme.lower() not in ("http", "https")
        user = userinfo.split(":", 1)[0]
        netloc = f"{userinfo}@{host}" if keep else (f"{user}:***@{host}" if ":" in userinfo and user else f"***@{host}")
    query = "***" if parts.query else ""
    fragment = "***" if parts.fragment else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def destination_uri(destination: str) -> str:
    """The asset URI of a local path or an object-storage URL (secrets in the URL redacted)."""
    if "://" in destination:
        return redact_url(destination).rstrip("/")
    return Path(destination).expanduser().absolute().as_uri()


def ee_asset_uri(asset_name: str) -> str:
    """The asset URI of an EE asset ``projects/P/assets/PATH``: ``x-earthengine://P/PATH``."""
    parts = asset_name.split("/", 3)
    if len(parts) != 4 or parts[0] != "projects" or parts[2] != "assets":
        raise ValueError(f"{asset_name!r} is not a full EE asset name (projects/P/assets/...).")
    return f"{EE_ASSET_SCHEME}://{parts[1]}/{parts[3]}"


def default_outlets(kwargs: dict[str, Any], uri: str | None) -> None:
    """Declare ``uri`` as the task's outlet unless the DAG gave ``outlets`` (or ``uri`` is None:
    a destination known only at run time cannot be scheduled on)."""
    if uri is None or kwargs.get("outlets") is not None:
        return
    from airflow.sdk import Asset

    kwargs["outlets"] = [Asset(uri=uri)]


def add_event_extras(context: Mapping[str, Any], outlets: Iterable[Any], extra: Mapping[str, Any]) -> None:
    """Put ``extra`` (JSON values) on the asset event Airflow emits for each Asset outlet, URLs
    among them redacted (:func:`redact_url`)."""
    from airflow.sdk import Asset

    events = context.get("outlet_events")
    if events is None:
        return
    for outlet in outlets or ():
        if isinstance(outlet, Asset):  # an event is shown to everyone who may see the asset: no secrets
            events[outlet].extra.update({k: redact_url(v) if isinstance(v, str) else v for k, v in extra.items()})
