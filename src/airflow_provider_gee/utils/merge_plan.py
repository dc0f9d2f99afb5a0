"""What a merge keeps across tries (the task state store, JSON), in its two phases: the level
being merged (:class:`MergeLevel`, also handed to the deferral) and, once the destination is
verified, the deletes under way (:class:`MergeDeletes`).

A record read back is checked field by field: one that is not what this provider writes (another
version's, or written by someone else) is no record at all, and the merge starts afresh instead
of trusting it. The JSON field names are those earlier versions wrote, so a try after an upgrade
goes on where the last one stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar


class MergePhase(StrEnum):
    """Where a merge stands: merging a level's groups, or deleting after the verification."""

    MERGING = "merging"
    DELETING = "deleting"


def _strs(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("not a list of strings")
    return list(value)


def _map(value: Any, kind: type) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, kind) for k, v in value.items()):
        raise ValueError(f"not a map of {kind.__name__}")
    return dict(value)


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError("not an integer")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("not a string")
    return value


@dataclass
class MergeLevel:
    """One level of a merge: groups of inputs, each merged into one target (the destination on the
    last level), and the batch of merge exports in flight.

    :param level: 1 for the parts, then one more per level of intermediates.
    :param groups: the inputs of each target, in order.
    :param targets: the asset each group is merged into.
    :param expected: features each target must hold once merged (its inputs' sum).
    :param sources: the fingerprint of each target's inputs (``from`` in JSON).
    :param intermediates: every intermediate asset of the merge so far (deleted at the end).
    :param parts: the parts the merge was given (what the destination is verified against).
    :param destination: the destination asset.
    :param source: the fingerprint of the parts.
    :param next: the index of the next group to submit.
    :param operations: the EE tasks of the batch in flight.
    """

    phase: ClassVar[MergePhase] = MergePhase.MERGING

    level: int
    groups: list[list[str]]
    targets: list[str]
    expected: dict[str, int]
    sources: dict[str, str]
    intermediates: list[str]
    parts: list[str]
    destination: str
    source: str
    next: int = 0
    operations: list[str] = field(default_factory=list)

    @property
    def final(self) -> bool:
        """Whether this level merges into the destination itself."""
        return len(self.targets) == 1

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level, "groups": self.groups, "targets": self.targets, "next": self.next,
            "expected": self.expected, "from": self.sources, "intermediates": self.intermediates,
            "parts": self.parts, "destination": self.destination, "source": self.source,
            "operations": self.operations,
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: Any) -> MergeLevel | None:
        """The level ``data`` describes, or ``None`` when it is not such a record."""
        try:
            if not isinstance(data, dict) or not isinstance(data.get("groups"), list):
                raise ValueError("not a level")
            plan = cls(
                level=_int(data["level"]), groups=[_strs(g) for g in data["groups"]], targets=_strs(data["targets"]),
                expected=_map(data["expected"], int), sources=_map(data["from"], str),
                intermediates=_strs(data["intermediates"]), parts=_strs(data["parts"]),
                destination=_str(data["destination"]), source=_str(data["source"]), next=_int(data["next"]),
                operations=_strs(data.get("operations") or []),
            )  # fmt: skip
        except (KeyError, ValueError):
            return None
        consistent = (
            len(plan.groups) == len(plan.targets)
            and 0 <= plan.next <= len(plan.groups)
            and set(plan.expected) == set(plan.targets) == set(plan.sources)
        )
        return plan if consistent else None


@dataclass
class MergeDeletes:
    """The destination was verified and its deletes began: what a retry finishes.

    :param destination: the destination asset.
    :param source: the fingerprint of the parts it was verified against (``from`` in JSON).
    :param parts: the verified parts to delete.
    :param intermediates: the merge's intermediates to delete.
    :param result: the merge's result, returned once the deletes are done.
    """

    phase: ClassVar[MergePhase] = MergePhase.DELETING

    destination: str
    source: str
    parts: list[str]
    intermediates: list[str]
    result: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "destination": self.destination, "from": self.source, "parts": self.parts,
            "intermediates": self.intermediates, "result": self.result,
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: Any) -> MergeDeletes | None:
        """The deletes ``data`` describes, or ``None`` when it is not such a record."""
        try:
            if not isinstance(data, dict) or not isinstance(data.get("result"), dict):
                raise ValueError("not a delete record")
            result = data["result"]
            if not (
                isinstance(result.get("asset_id"), str)
                and isinstance(result.get("feature_count"), int)
                and isinstance(result.get("parts"), list)
            ):
                raise ValueError("not a merge result")
            return cls(
                destination=_str(data["destination"]), source=_str(data["from"]), parts=_strs(data["parts"]),
                intermediates=_strs(data["intermediates"]), result=dict(result),
            )  # fmt: skip
        except (KeyError, ValueError):
            return None
