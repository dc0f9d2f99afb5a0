"""AssetMergeOperator: many table assets into one, verified before any part is deleted; and
GeeAssetCleanupOperator: recursive delete (dry-run by default) that never leaves its folder."""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import json
import re
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import Context

from airflow_provider_gee.exceptions import (
    EarthEngineError,
    EarthEngineTaskFailed,
    GeeConfigurationError,
    GeeRetryableError,
)
from airflow_provider_gee.links.earth_engine import EarthEngineAssetLink, asset_url
from airflow_provider_gee.operators.base import GeeBaseOperator
from airflow_provider_gee.triggers.events import operations_event
from airflow_provider_gee.utils.merge_plan import MergeDeletes, MergeLevel
from airflow_provider_gee.utils.naming import RUN_TOKEN, request_id, run_token, sanitize_description
from airflow_provider_gee.utils.operations import as_export_result, export_parts
from airflow_provider_gee.utils.outlets import add_event_extras, default_outlets, ee_asset_uri, is_template
from airflow_provider_gee.utils.task_state import TaskState

# the hook and trigger (Google provider, aiohttp) are imported where used, not when the DAG is parsed

_STATE_KEY = "gee_merge_level"
#: the task state store's record of a verified merge whose parts are being deleted
_DELETING_KEY = "gee_merge_deleting"
#: asset properties a verified merge target carries: what it was merged from, and by which task
#: instance (so a later run never takes a stale table for its own, and a retry knows its merge)
MERGED_FROM = "gee_merged_from"
MERGED_BY = "gee_merged_by"
#: the verified parts a merge is about to delete (names, compressed) and when it verified them:
#: a retry without a task state store (Airflow < 3.3) deletes exactly these, never a newer part
MERGED_PARTS = "gee_merged_parts"
#: EE does not document a size limit for a property value; a record larger than this is not
#: written (such a retry then keeps the parts it cannot prove were merged, and says so)
MAX_PARTS_RECORD_BYTES = 64_000
#: the HMAC-SHA256 of a merge record (:func:`sign_record`). Anyone who can write an asset can write
#: its properties, so a record is trusted only with a valid one (or when it is in the task state
#: store): a copied digest or a record naming a run to come is not
MERGED_SIG = "gee_merged_sig"
#: what the MAC covers besides the record, so it is never valid for anything but a merge record
_RECORD_TAG = b"airflow-provider-gee merge record v1\n"


def _record_key() -> bytes | None:
    """The per-deployment secret that authenticates the merge records written on assets: Airflow
    config ``[gee] record_secret``, else ``[core] fernet_key`` (each deployment has its own, so one
    never trusts another's records, even through a shared EE identity).

    None when both are empty: then no record read from an asset is trusted, only the task state
    store (Airflow 3.3+). A later run then never takes an earlier merge for its own (it fails unless
    ``overwrite``, which merges again) and a retry without a task state store cannot finish an
    interrupted delete (the parts left are kept).
    """
    from airflow.configuration import conf

    secret = conf.get("gee", "record_secret", fallback=None) or conf.get("core", "fernet_key", fallback="")
    return secret.encode() if secret else None


def sign_record(key: bytes, name: str, count: int, record: dict[str, Any]) -> str:
    """The ``gee_merged_sig`` value: HMAC-SHA256 (hex) over the merge record of table ``name``
    holding ``count`` features. The table's name and count are covered, so the record does not
    verify on another asset, nor on this one once its number of rows has changed.

    :param key: the secret, from :func:`_record_key`.
    :param name: the table's full asset name.
    :param count: its feature count, as verified.
    :param record: its properties; ``gee_merged_from``, ``gee_merged_by`` and ``gee_merged_parts``
        are covered (an absent one as null).
    """
    fields = {k: record.get(k) for k in (MERGED_FROM, MERGED_BY, MERGED_PARTS)}
    message = json.dumps({"asset": name, "count": count, **fields}, sort_keys=True, separators=(",", ":"))
    return hmac.new(key, _RECORD_TAG + message.encode(), hashlib.sha256).hexdigest()


def encode_parts(latest: str, names: dict[str, list[str]]) -> str | None:
    """The ``gee_merged_parts`` value: ``<latest>|<base64 of zlib of JSON {"parts": [...],
    "intermediates": [...]}>``, where ``latest`` is the newest part ``updateTime`` the merge saw;
    None when longer than :data:`MAX_PARTS_RECORD_BYTES`."""
    packed = base64.b64encode(zlib.compress(json.dumps(names, sort_keys=True).encode(), 9)).decode()
    value = f"{latest}|{packed}"
    return value if len(value) <= MAX_PARTS_RECORD_BYTES else None


def decode_parts(value: Any) -> tuple[str, dict[str, list[str]]] | None:
    """``(latest, {"parts": ..., "intermediates": ...})`` of a ``gee_merged_parts`` value; None
    for anything else."""
    if not isinstance(value, str) or "|" not in value:
        return None
    latest, _, packed = value.partition("|")
    try:
        names = json.loads(zlib.decompress(base64.b64decode(packed, validate=True)))
    except (ValueError, zlib.error):
        return None
    if not isinstance(names, dict) or not all(isinstance(names.get(k), list) for k in ("parts", "intermediates")):
        return None
    return latest, names


def _time(value: str | None) -> datetime:
    """An RFC 3339 timestamp as EE writes it (``Z``, 0-9 fraction digits); the epoch for None."""
    if not value:
        return datetime.fromtimestamp(0, UTC)
    return datetime.fromisoformat(value)  # Python 3.11+ reads Z and 9 fraction digits


def feature_count(asset: dict[str, Any]) -> int:
    """A table asset's ``featureCount`` as its metadata says, 0 when absent (EE sends int64 as a
    string and omits 0): for digests of what an asset looks like only. To verify a count, use
    :meth:`AssetMergeOperator._size`, which counts when the field is absent."""
    return int(asset.get("featureCount") or 0)


class AssetMergeOperator(GeeBaseOperator):
    """Merge table assets (FeatureCollections) into one destination asset.

    The parts are merged by an EE table export (``FeatureCollection([...]).flatten()``) that the
    operator waits for (deferrable, :class:`GeeTaskTrigger`). More parts than
    ``max_parts_per_merge`` are merged in levels through intermediate assets, so no expression
    grows beyond EE's limits. The result is verified (feature count = the parts' sum; properties =
    the union of the parts') before anything is deleted; then the intermediates, and with
    ``delete_sources`` exactly the verified parts, are removed. Counts are EE's ``featureCount``, or
    when EE leaves it out (it omits 0) the table's ``size()`` computed by EE: absent is unknown,
    never taken for 0. Right before the first delete the destination is read again and its count
    checked once more.

    Every verified merge target records what it was merged from (asset property
    ``gee_merged_from``: a digest of the inputs' names, update times and counts) and by which task
    instance (``gee_merged_by``), signed (``gee_merged_sig``: HMAC-SHA256 keyed by the
    deployment's secret, see :func:`_record_key`, over the record, the table's name and its count).
    Anyone who can write the asset can write these properties, so a record without a valid
    signature is ignored as if absent. A destination with a valid record of exactly these parts is
    kept (the export is skipped); any other existing destination, even one with the right count,
    is an error unless ``overwrite``. Intermediates (reserved names ``<destination>__merge_l<level>
    _<group>``) are reused on the same rule, and an existing one that is not is an error unless
    ``overwrite``. Before the first part is deleted the list is recorded, in the task state store
    (Airflow 3.3+) and as the destination's signed ``gee_merged_parts`` property (compressed names,
    with the newest part update time the merge saw): a retry after a crash or a failed delete
    finishes exactly those deletes and never merges again; a part added or rewritten since is kept
    and reported (``kept``). A retry after a try that died between submitting a merge export and
    verifying it waits for that export again (3.3+; before 3.3 it finds an unrecorded destination
    and needs ``overwrite`` to merge anew).

    Nothing is deleted on the strength of a record alone: a part is deleted only with
    ``delete_sources`` and only if it is one of the parts this task was given (and, when recorded,
    unchanged since), an intermediate only under its reserved name.

    :param destination_asset: the merged table (templated; relative ids are in the connection's project).
    :param source_folder: folder holding the parts (templated), with ``pattern``.
    :param pattern: shell pattern of part paths relative to ``source_folder`` (default ``*``).
        ``{run_token}`` stands for the run's token, which exports add to their asset ids
        (``pattern="chunk_*_{run_token}"``: this run's parts only; a folder that several runs
        export into holds their parts side by side). Prefer ``export_results``: exactly the parts.
    :param sources: explicit part asset ids, instead of a folder.
    :param export_results: upstream ``GeeExportOperator`` results (asset exports), instead of a folder.
    :param delete_sources: delete the parts after the merged table is verified.
    :param overwrite: replace an existing destination (or intermediate) that is not a recorded
        merge of exactly these parts.
    :param max_parts_per_merge: parts merged by one EE export; more go through levels.
    :param max_parallel_merges: merge exports of a level in flight at once. The default 1 keeps the
        pool's rule (one slot, one EE task); raise it with ``pool_slots`` to match.
    :param gcp_conn_id: the Airflow connection id.
    :param impersonation_chain: optional service account(s) to impersonate.
    :param poll_interval: seconds between status checks.

    A full destination name (``projects/P/assets/...``) is the task's outlet, an Airflow Asset
    ``x-earthengine://P/...``, unless ``outlets`` are given; each outlet's event carries the merged
    asset, its feature count and the parts merged and deleted.
    """

    template_fields: Sequence[str] = (
        "destination_asset", "source_folder", "pattern", "sources", "export_results",
        *GeeBaseOperator.template_fields,
    )  # fmt: skip
    operator_extra_links = (EarthEngineAssetLink(),)
    ui_color = "#ecd2e3"

    def __init__(
        self,
        *,
        destination_asset: str,
        source_folder: str | None = None,
        pattern: str = "*",
        sources: Sequence[str] | None = None,
        export_results: Sequence[dict[str, Any]] | None = None,
        delete_sources: bool = False,
        overwrite: bool = False,
        max_parts_per_merge: int = 100,
        max_parallel_merges: int = 1,
        poll_interval: float = 10.0,
        **kwargs: Any,
    ) -> None:
        # a full asset name (projects/P/assets/...) is the outlet; a relative one's project is the
        # connection's, known only when the task runs
        full = not is_template(destination_asset) and destination_asset.startswith("projects/")
        default_outlets(kwargs, ee_asset_uri(destination_asset) if full else None)
        super().__init__(**kwargs)
        self.destination_asset = destination_asset
        self.source_folder = source_folder
        self.pattern = pattern
        self.sources = sources
        self.export_results = export_results
        self.delete_sources = delete_sources
        self.overwrite = overwrite
        self.max_parts_per_merge = max_parts_per_merge
        self.max_parallel_merges = max_parallel_merges
        self.poll_interval = poll_interval

    # ------------------------------------------------------------------ inputs

    def _parts(self) -> list[str]:
        given = [x is not None for x in (self.source_folder, self.sources, self.export_results)]
        if sum(given) != 1:
            raise GeeConfigurationError("Give exactly one of source_folder=..., sources=[...] or export_results=....")
        if self.max_parts_per_merge < 2:
            raise GeeConfigurationError(f"max_parts_per_merge must be at least 2, got {self.max_parts_per_merge}.")
        if self.source_folder is not None:
            from airflow_provider_gee.hooks.earth_engine import check_relative_pattern

            check_relative_pattern(self.pattern)
            folder = self.hook.asset_name(self.source_folder)
            parts = [
                a["name"] for a in self.hook.list_assets(folder, recursive=True, pattern=self.pattern)
                if a.get("type") == "TABLE"
            ]  # fmt: skip
            if any(not p.startswith(folder + "/") for p in parts):
                raise GeeConfigurationError(f"Pattern {self.pattern!r} matched assets outside {folder!r}.")
        elif self.sources is not None:
            parts = [self.hook.asset_name(s) for s in self.sources]
        else:
            results = [as_export_result(r) for r in self.export_results or []]
            bad = [r for r in results if r.get("destination") != "asset" or not r.get("asset_id")]
            if bad:
                raise GeeConfigurationError(f"export_results must come from asset exports; {len(bad)} do not.")
            parts = [p["asset_id"] for r in results for p in export_parts(r)]  # a split tile's parts too
        parts = sorted(set(parts))
        destination = self.hook.asset_name(self.destination_asset)
        if destination in parts:
            raise GeeConfigurationError(f"destination_asset {destination!r} is also one of the parts.")
        if not parts:
            raise GeeConfigurationError(f"No table asset to merge ({self.source_folder or self.sources!r}).")
        return parts

    def _taken(self, names: list[str]) -> list[str]:
        """Those of ``names`` that are parts this merge is given, found without listing them (a
        part an interrupted delete removed is no longer listed): in ``sources`` or
        ``export_results``, or under ``source_folder`` matching ``pattern`` (no ``..`` step)."""
        if self.source_folder is not None:
            folder = self.hook.asset_name(self.source_folder) + "/"
            relative = {n: n.removeprefix(folder) for n in names if n.startswith(folder)}
            return [
                n for n, rel in relative.items()
                if ".." not in rel.split("/") and fnmatch.fnmatchcase(rel, self.pattern)
            ]  # fmt: skip
        if self.sources is not None:
            given = {self.hook.asset_name(s) for s in self.sources}
        else:
            results = [as_export_result(r) for r in self.export_results or []]
            given = {str(p.get("asset_id")) for r in results for p in export_parts(r)}
        return [n for n in names if n in given]

    def _count(self, name: str) -> int:
        """Read table ``name`` (kept in ``_seen``) and return its feature count."""
        asset = self.hook.get_asset(name)
        if asset is None or asset.get("type") != "TABLE":
            raise GeeConfigurationError(
                f"{name!r} is not an existing table asset: merge table assets only (check the name, "
                "source_folder/pattern or the upstream export)."
            )
        self._seen[name] = asset
        return self._size(asset)

    def _size(self, asset: dict[str, Any]) -> int:
        """A table's feature count: its ``featureCount``, or when EE leaves that out (it omits 0,
        and need not have counted yet) the count EE computes, ``size()``: absent is unknown, not 0."""
        value = asset.get("featureCount")
        if value not in (None, ""):
            return int(value)
        import ee

        self.hook.initialize_ee()
        return int(self.hook.compute_value(ee.FeatureCollection(asset["name"]).size()))

    @staticmethod
    def _ours(asset: dict[str, Any] | None, count: int) -> bool:
        """Whether the merge record on ``asset`` (of ``count`` features) was written by this
        deployment: its ``gee_merged_sig`` verifies. False without a secret (:func:`_record_key`)."""
        properties = (asset or {}).get("properties") or {}
        signature, key = properties.get(MERGED_SIG), _record_key()
        if key is None or not isinstance(signature, str):
            return False
        return hmac.compare_digest(signature, sign_record(key, (asset or {})["name"], count, properties))

    def _signed(self, name: str, count: int, record: dict[str, Any]) -> dict[str, Any]:
        """``record`` with its ``gee_merged_sig`` (None, which removes a stale one, without a secret)."""
        key = _record_key()
        if key is None:
            self.log.warning(
                "Neither [gee] record_secret nor [core] fernet_key is set: the merge record on %s cannot be "
                "signed, so no later run or retry will trust it (set [gee] record_secret to a secret of this "
                "deployment)", name,
            )  # fmt: skip
        return {**record, MERGED_SIG: sign_record(key, name, count, record) if key else None}

    @staticmethod
    def _is_intermediate(name: str, destination: str) -> bool:
        """Whether ``name`` is one of the names reserved for ``destination``'s intermediates."""
        return re.fullmatch(re.escape(destination) + r"__merge_l\d+_\d{4,}", name) is not None

    def _fingerprint(self, inputs: list[str]) -> str:
        """A digest of merge inputs as they are now: names, update times, feature counts."""
        lines = []
        for name in sorted(inputs):
            asset = self._seen.get(name) or self.hook.get_asset(name) or {}
            lines.append(f"{name}|{asset.get('updateTime')}|{feature_count(asset)}")
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()

    @staticmethod
    def _merged_from(asset: dict[str, Any] | None) -> str | None:
        return ((asset or {}).get("properties") or {}).get(MERGED_FROM)

    @staticmethod
    def _instance(context: Context) -> str:
        ti = context["ti"]
        return f"{ti.dag_id}/{ti.task_id}/{ti.run_id}/{ti.map_index}"

    def _properties(self, name: str) -> set[str]:
        first = next(iter(self.hook.list_features(name, page_size=1)), None)
        return set((first or {}).get("properties") or {})

    # ------------------------------------------------------------------ run

    def execute(self, context: Context) -> dict[str, Any]:
        self._seen: dict[str, dict[str, Any]] = {}
        if RUN_TOKEN in self.pattern:  # the run's own parts: exports add the run's token to asset ids
            self.pattern = self.pattern.replace(RUN_TOKEN, run_token(context["ti"].dag_id, context["ti"].run_id))
        destination = self.hook.asset_name(self.destination_asset)
        EarthEngineAssetLink.persist(context, url=asset_url(destination))
        existing = self.hook.get_asset(destination)
        state = TaskState(context)
        deleting = MergeDeletes.from_json(state.get(_DELETING_KEY))
        if deleting and deleting.destination == destination and self._merged_from(existing) == deleting.source:
            self.log.info(
                "An earlier try verified %s and was deleting its parts: finishing that, no merge", destination
            )
            # only parts this merge takes: the record is this task instance's, yet never trusted with more
            doomed = self._taken(deleting.parts)
            refused = sorted(set(deleting.parts) - set(doomed))
            if refused:
                self.log.warning("The stored deletes name assets this merge does not take; not deleting %s", refused)
            return self._delete(context, deleting.result, doomed, deleting.intermediates)
        parts = self._parts()
        counts = {p: self._count(p) for p in parts}
        total = sum(counts.values())
        source = self._fingerprint(parts)
        self.log.info("Merging %d parts (%d features) into %s", len(parts), total, destination)
        plan = MergeLevel.from_json(state.get(_STATE_KEY))
        if plan and plan.destination == destination and plan.source == source:
            # an earlier try of this task instance merged exactly these parts and died (or failed
            # a delete) before verifying: wait for its exports again instead of submitting others
            self.log.info(
                "An earlier try submitted level %d of this merge: waiting for its %d export(s) again",
                plan.level, len(plan.operations),
            )  # fmt: skip
            return self._resume(context, plan)
        if existing is not None:
            have = self._size(existing) if existing.get("type") == "TABLE" else 0
            # a record is this deployment's only if signed with its secret: anyone who can write
            # the asset can write a digest or a task instance id, and would make us skip the merge
            # or delete what the record names
            ours = existing.get("type") == "TABLE" and self._ours(existing, have)
            if ours and self._merged_from(existing) == source and have == total:
                self.log.info("%s was merged from exactly these parts: keeping it, no export", destination)
                return self._finish(context, parts, counts, [], skipped=True)
            if ours and (existing.get("properties") or {}).get(MERGED_BY) == self._instance(context):
                return self._finish_recorded_deletes(context, existing, parts, have)
            if self._merged_from(existing) and not ours:
                self.log.warning("%s carries a merge record this deployment did not sign: ignoring it", destination)
            if not self.overwrite:
                raise GeeConfigurationError(
                    f"{destination!r} exists ({have} features) and was not merged from these {len(parts)} parts "
                    f"({total} features): pass overwrite=True to replace it, or merge into a new destination."
                )
        return self._advance(context, self._level_plan(1, parts, counts, intermediates=[], parts=parts))

    def _finish_recorded_deletes(
        self, context: Context, existing: dict[str, Any], parts: list[str], count: int
    ) -> dict[str, Any]:
        """A retry without a task state store after an earlier try of this task instance verified
        the merge and began deleting: delete exactly the parts (and intermediates) that merge
        recorded on the destination, unchanged since; keep anything else and say so.

        :param existing: the destination, whose record this deployment signed (checked by the caller).
        :param parts: the parts this task was given, as they are now; only these are ever deleted.
        :param count: the destination's feature count, which the signature covers: the parts' sum
            when the earlier try verified them.
        """
        destination = existing["name"]
        record = decode_parts((existing.get("properties") or {}).get(MERGED_PARTS))
        doomed: list[str] = []
        intermediates: list[str] = []
        if record is not None:
            latest, recorded = record
            doomed = [
                p for p in parts
                if self.delete_sources and p in recorded["parts"]
                and _time(self._seen[p].get("updateTime")) <= _time(latest)
            ]  # fmt: skip
            # even a signed record names intermediates only under their reserved names
            intermediates = [n for n in recorded["intermediates"] if self._is_intermediate(n, destination)]
        kept = [p for p in parts if p not in doomed]
        if kept:
            self.log.warning(
                "An earlier try merged into %s and deleted some parts; keeping %d part(s) it did not record "
                "as merged: %s", destination, len(kept), ", ".join(kept[:5]) + (" ..." if len(kept) > 5 else ""),
            )  # fmt: skip
        else:
            self.log.info("An earlier try verified %s and was deleting its parts: finishing that", destination)
        result = {
            "asset_id": destination, "feature_count": count, "parts": sorted(record[1]["parts"])
            if record else [], "deleted": [], "kept": kept, "properties": [], "export_skipped": True,
        }  # fmt: skip
        return self._delete(context, result, doomed, intermediates)

    def _level_plan(
        self,
        level: int,
        inputs: list[str],
        counts: dict[str, int],
        intermediates: list[str],
        parts: list[str],
        source: str | None = None,
    ) -> MergeLevel:
        """One level: groups of inputs, each merged into one target (the destination, last)."""
        destination = self.hook.asset_name(self.destination_asset)
        size = self.max_parts_per_merge
        groups = [inputs[i : i + size] for i in range(0, len(inputs), size)]
        final = len(groups) == 1
        targets = [destination] if final else [f"{destination}__merge_l{level}_{i:04d}" for i in range(len(groups))]
        return MergeLevel(
            level=level, groups=groups, targets=targets,
            expected={t: sum(counts[p] for p in g) for g, t in zip(groups, targets, strict=True)},
            sources={t: self._fingerprint(g) for g, t in zip(groups, targets, strict=True)},
            intermediates=intermediates + ([] if final else targets), parts=parts,
            destination=destination, source=source or self._fingerprint(parts),
        )  # fmt: skip

    def _advance(self, context: Context, plan: MergeLevel) -> dict[str, Any]:
        """Submit the next merges (at most ``max_parallel_merges`` at once, so the pool keeps its
        meaning), defer until they end, verify each finished level, go on to the next."""
        import ee

        ti = context["ti"]
        while True:
            operations: list[str] = []
            while plan.next < len(plan.groups) and len(operations) < self.max_parallel_merges:
                index = plan.next
                plan.next += 1
                group, target = plan.groups[index], plan.targets[index]
                final = plan.final
                existing = self.hook.get_asset(target)
                if not final and existing is not None:
                    have = self._size(existing) if existing.get("type") == "TABLE" else -1
                    if (
                        self._ours(existing, have)
                        and self._merged_from(existing) == plan.sources[target]
                        and have == plan.expected[target]
                    ):
                        continue  # an intermediate an earlier try merged (and signed) from exactly these inputs
                    if not self.overwrite:
                        raise GeeConfigurationError(
                            f"{target!r} exists but is not this merge's intermediate of these inputs (the name is "
                            f"reserved for merging into {plan.destination!r}): delete it, pass overwrite=True "
                            "to replace it, or merge into another destination."
                        )
                self.hook.initialize_ee()
                merged = ee.FeatureCollection([ee.FeatureCollection(g) for g in group]).flatten()
                level = plan.level
                description = sanitize_description(f"merge.{ti.dag_id}.{ti.task_id}.l{level}.{index:04d}")
                # one requestId per try, level and group: a new try after a failed merge starts afresh
                rid = (
                    f"{request_id(ti.dag_id, ti.task_id, ti.run_id, ti.map_index, ti.try_number)}-l{level}-{index:04d}"
                )
                op = self.hook.start_export(
                    merged, kind="table", destination="asset", request_id=rid, description=description,
                    assetId=target, overwrite=self.overwrite,
                )  # fmt: skip
                operations.append(op["name"])
            if operations:
                self.log.info("Level %d: merging group(s) up to %d of %d", plan.level, plan.next, len(plan.groups))
                plan.operations = operations
                TaskState(context).set(_STATE_KEY, plan.to_json())
                self._wait(plan)
            if plan.next < len(plan.groups):
                continue  # every group of this batch was already complete
            for target in plan.targets:  # verify the whole level before using it
                have = self._count(target)
                if have != plan.expected[target]:
                    self._forget_plan(context)  # a retry merges anew (overwrite permitting), not waits on this
                    raise EarthEngineError(
                        f"{target} holds {have} features, expected {plan.expected[target]}: not deleting anything."
                    )
                if not plan.final:  # record (signed) what the intermediate holds, for a retry
                    record = {MERGED_FROM: plan.sources[target], MERGED_BY: None, MERGED_PARTS: None}
                    self.hook.set_asset_properties(target, self._signed(target, have, record))
                    self._seen.pop(target, None)
            if plan.final:
                part_counts = {p: self._count(p) for p in plan.parts}
                return self._finish(context, plan.parts, part_counts, plan.intermediates, skipped=False)
            plan = self._level_plan(plan.level + 1, plan.targets, plan.expected, plan.intermediates, plan.parts,
                                    plan.source)  # fmt: skip

    @staticmethod
    def _forget_plan(context: Context, deleting: bool = False) -> None:
        """Drop the stored level plan (and the delete record) of this task instance."""
        TaskState(context).delete(_STATE_KEY, *([_DELETING_KEY] if deleting else []))

    def _wait(self, plan: MergeLevel) -> None:
        """Defer until the plan's submitted merge exports end (then :meth:`level_complete`)."""
        from airflow_provider_gee.triggers.task import GeeTaskTrigger

        self.defer(
            trigger=GeeTaskTrigger(
                plan.operations,
                gcp_conn_id=self.gcp_conn_id,
                impersonation_chain=self.impersonation_chain,
                poll_interval=self.poll_interval,
            ),
            method_name="level_complete",
            # the plan travels with the deferral; ``dag.test()`` drops these kwargs when its inline
            # trigger fires, hence the store as well where there is one
            kwargs={"plan": plan.to_json()},
        )

    def _resume(self, context: Context, plan: MergeLevel) -> dict[str, Any]:
        if plan.operations:
            self._wait(plan)
        return self._advance(context, plan)

    def level_complete(
        self, context: Context, event: dict[str, Any], plan: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Resume after a batch of merge exports ended; ``plan`` is the level's plan, as deferred."""
        level = MergeLevel.from_json(plan if plan is not None else TaskState(context).get(_STATE_KEY))
        if level is None:  # deferred without its plan (3.3+), and the store lost it: the retry merges anew
            raise GeeRetryableError("The merge's stored plan is gone; nothing was deleted. A retry merges again.")
        self._seen = {}
        ended = operations_event(event)
        if ended["status"] != "success":
            failed = [s for s in ended["operations"].values() if s["state"] != "SUCCEEDED"]
            message = (failed[0].get("error") if failed else None) or ended.get("message", "merge failed")
            self._forget_plan(context)  # a retry starts afresh (new exports), not by waiting on failed ones
            raise EarthEngineTaskFailed(
                f"Merge level {level.level} failed: {message}. Every part is kept.",
                operation=failed[0]["name"] if failed else "", state=failed[0]["state"] if failed else "FAILED",
            )  # fmt: skip
        return self._advance(context, level)

    def _finish(
        self, context: Context, parts: list[str], counts: dict[str, int], intermediates: list[str], skipped: bool
    ) -> dict[str, Any]:
        """Verify the destination (count and properties), record what it was merged from, then
        delete exactly the verified parts (with ``delete_sources``) and the intermediates."""
        destination = self.hook.asset_name(self.destination_asset)
        total = sum(counts.values())
        have = self._count(destination)
        if have != total:
            self._forget_plan(context)
            raise EarthEngineError(f"{destination} holds {have} features, the parts {total}: keeping every part.")
        union = set().union(*(self._properties(p) for p in parts))
        missing = union - self._properties(destination)
        if missing:
            self._forget_plan(context)
            raise EarthEngineError(
                f"{destination} lacks properties {sorted(missing)} of the parts: keeping every part."
            )
        fingerprint = self._fingerprint(parts)
        doomed = parts if self.delete_sources else []
        # every field written, None removing it: the signature covers the record as it now stands,
        # never a parts list an earlier merge left
        record: dict[str, Any] = {MERGED_FROM: fingerprint, MERGED_BY: self._instance(context), MERGED_PARTS: None}
        if doomed or intermediates:
            # the server's own clock: the newest part seen; a part updated later is not this merge's
            latest = max((self._seen.get(p) or {}).get("updateTime") or "" for p in parts)
            packed = encode_parts(latest, {"parts": doomed, "intermediates": intermediates})
            if packed is None:
                self.log.warning("Too many parts to record on %s; a retry without a task state store keeps "
                                 "those an interrupted delete left", destination)  # fmt: skip
            record[MERGED_PARTS] = packed
        self.hook.set_asset_properties(destination, self._signed(destination, total, record))
        result = {
            "asset_id": destination, "feature_count": total, "parts": parts, "deleted": [],
            "properties": sorted(union), "export_skipped": skipped,
        }  # fmt: skip
        if doomed or intermediates:
            # before the first delete: a retry finishes these deletes instead of merging again
            deletes = MergeDeletes(destination, fingerprint, doomed, intermediates, result)
            TaskState(context).set(_DELETING_KEY, deletes.to_json())
        return self._delete(context, result, doomed, intermediates)

    def _delete(
        self, context: Context, result: dict[str, Any], parts: list[str], intermediates: list[str]
    ) -> dict[str, Any]:
        """Delete the verified ``parts`` (only with ``delete_sources``) and the merge's own
        ``intermediates`` (only under their reserved names), after reading the destination again
        and finding the count it was verified with (``result["feature_count"]``, the parts' sum).

        :param result: the merge's result; ``asset_id`` is the destination.
        :param parts: parts this task was given and verified as merged.
        :param intermediates: the merge's intermediates.
        """
        destination = result["asset_id"]
        parts = list(parts) if self.delete_sources else []
        intermediates = [n for n in intermediates if self._is_intermediate(n, destination)]
        if parts or intermediates:
            # whatever happened since the verification (another writer, a retry's stale record):
            # the table is read again and counted right before the first delete
            now = self.hook.get_asset(destination)
            have = self._size(now) if now is not None and now.get("type") == "TABLE" else None
            if have != result["feature_count"]:
                raise EarthEngineError(
                    f"{destination} holds {'no table' if have is None else f'{have} features'} now, not the "
                    f"{result['feature_count']} verified from the parts: deleting nothing. Check who changed it, "
                    "then run the merge again (overwrite=True merges anew)."
                )
        for name in intermediates:
            self.hook.delete_asset(name, missing_ok=True)
        for name in parts:  # exactly the verified parts
            self.hook.delete_asset(name, missing_ok=True)
        result = {**result, "deleted": list(parts)}
        self._forget_plan(context, deleting=True)  # done: a later run of this task instance starts afresh
        self.log.info(
            "%s verified: %d features from %d parts; deleted %d parts", result["asset_id"], result["feature_count"],
            len(result["parts"]), len(parts),
        )  # fmt: skip
        extra = {"asset_id": result["asset_id"], "feature_count": result["feature_count"],
                 "parts": len(result["parts"]), "deleted": len(parts)}  # fmt: skip
        add_event_extras(context, self.outlets, extra)
        self._lineage = ([ee_asset_uri(p) for p in result["parts"]], [ee_asset_uri(result["asset_id"])])
        return result


class GeeAssetCleanupOperator(GeeBaseOperator):
    """Delete assets under a folder matching a pattern, deepest first; only lists them while
    ``dry_run`` (the default). Never acts outside the folder it was given.

    :param folder: the folder (templated).
    :param pattern: shell pattern relative to ``folder`` (templated).
    :param dry_run: only log and return what would be deleted.
    :param gcp_conn_id: the Airflow connection id.
    :param impersonation_chain: optional service account(s) to impersonate (templated).
    """

    template_fields: Sequence[str] = ("folder", "pattern", *GeeBaseOperator.template_fields)

    def __init__(self, *, folder: str, pattern: str = "*", dry_run: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # not self.dry_run: that would hide Airflow's BaseOperator.dry_run() method
        self.folder, self.pattern, self.list_only = folder, pattern, dry_run

    def execute(self, context: Context) -> list[str]:
        return self.hook.delete_tree(self.folder, pattern=self.pattern, dry_run=self.list_only)
