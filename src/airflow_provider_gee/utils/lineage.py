"""OpenLineage: the datasets the operators read and write, for ``get_openlineage_facets_on_complete``.

Names follow OpenLineage's dataset naming as Airflow's own providers convert their assets
(Cloud Storage: namespace ``gs://<bucket>``, name the object path; local files: namespace
``file``, name the absolute path; other object stores by their URL). Earth
Engine assets and Drive folders, for which it has none, are named by the same URIs as the Airflow
Assets (:mod:`~airflow_provider_gee.utils.outlets`): ``x-earthengine://<project>/<asset path>``
and ``x-google-drive://<folder>/<file prefix>``, split into namespace (scheme and authority) and
name (path).

The OpenLineage provider is optional: its classes are imported only when its listener asks.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from airflow_provider_gee.utils.operations import export_parts
from airflow_provider_gee.utils.outlets import ee_asset_uri, redact_url

DRIVE_SCHEME = "x-google-drive"
#: EE functions that read an asset, and the argument that names it (``ee/data.py``: what
#: ``ee.Image(id)``, ``ee.ImageCollection(id)`` and ``ee.FeatureCollection(id)`` serialize to)
_LOADS = {"Image.load": "id", "ImageCollection.load": "id", "Collection.loadTable": "tableId"}


def ee_inputs(expression: Any) -> list[str]:
    """The asset ids an EE expression (``ee``'s serialized cloud-API form) loads, in order, once."""
    found: dict[str, None] = {}
    for node in _walk(expression):
        invocation = node.get("functionInvocationValue")
        if isinstance(invocation, dict) and invocation.get("functionName") in _LOADS:
            arg = (invocation.get("arguments") or {}).get(_LOADS[invocation["functionName"]]) or {}
            if isinstance(arg.get("constantValue"), str):
                found[arg["constantValue"]] = None
    return list(found)


def _walk(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def drive_uri(folder: str | None, prefix: str | None) -> str:
    """The URI of an export's files in Drive: its folder (id, else name, else the root) and prefix."""
    return f"{DRIVE_SCHEME}://{folder or 'root'}/{prefix or ''}"


def export_output_uris(result: dict[str, Any]) -> list[str]:
    """Where an export result's data went: the asset, the bucket prefix or the Drive folder and
    prefix; one per part of a split tile."""
    uris = []
    for part in export_parts(result):
        if part.get("destination") == "asset" and part.get("asset_id"):
            uris.append(ee_asset_uri(part["asset_id"]))
        elif part.get("destination") == "gcs":
            uris.append(f"gs://{part.get('bucket')}/{part.get('file_name_prefix') or ''}")
        elif part.get("destination") == "drive":
            uris.append(drive_uri(part.get("drive_folder_id") or part.get("folder"), part.get("file_name_prefix")))
    return uris


class LineageMixin:
    """``get_openlineage_facets_on_complete`` for an operator that records, when it succeeds,
    what it read and wrote in ``_lineage`` (input URIs, output URIs). The OpenLineage provider's
    listener calls it on the worker, with the same operator object, after ``execute``."""

    _lineage: tuple[list[str], list[str]] | None = None

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """The datasets the run read and wrote (none known: an empty lineage)."""
        inputs, outputs = self._lineage or ([], [])
        return operator_lineage(inputs, outputs)


def operator_lineage(inputs: Iterable[str], outputs: Iterable[str]) -> Any:
    """An ``OperatorLineage`` of the datasets at these URIs (duplicates dropped, order kept)."""
    from airflow.providers.openlineage.extractors import OperatorLineage

    return OperatorLineage(inputs=_datasets(inputs), outputs=_datasets(outputs))


def _datasets(uris: Iterable[str]) -> list[Any]:
    from openlineage.client.event_v2 import Dataset

    datasets = []
    for uri in dict.fromkeys(redact_url(u) for u in uris):  # a facet is no place for a password
        scheme, _, rest = uri.partition("://")
        authority, _, path = rest.partition("/")
        if authority:
            datasets.append(Dataset(namespace=f"{scheme}://{authority}", name=path or "/"))
        else:  # file:///abs/path, as airflow.providers.common.io converts a file asset
            datasets.append(Dataset(namespace=scheme, name=f"/{path}"))
    return datasets
