"""Fault injection rules for the emulator (``POST /_emulator/faults``).

Kinds of rule (JSON objects):

* ``{"kind": "http", "route": "ee.operations.*", "status": 503, "count": 2}``: answer the next
  ``count`` matching requests with ``status``. ``"rate": 0.1`` (with ``"seed"``) answers that
  share of them instead; ``"after": true`` handles the request first and then answers the error,
  like a response lost on the way back; ``"skip": N`` lets the first N matching requests through.
  ``"delay": S`` instead holds each matching request S seconds and then handles it normally (a
  slow server: time to kill a client between two requests).
* ``{"kind": "task_failure", "match": "tile-r0001*", "count": 1, "message": "..."}``: the next
  matching tasks (by description) end FAILED with ``message``.
* ``{"kind": "download", "mode": "cut" | "corrupt" | "slow", "match": "*.tif", "count": 1,
  "after_bytes": 1000, "bytes_per_second": 100000}``: Drive media downloads of matching file
  names are cut after ``after_bytes``, get one byte flipped, or are throttled.
* ``{"kind": "truncate", "match": "merge*", "drop": 1}``: the next table export to an asset whose
  description matches silently loses ``drop`` features (a wrong count to detect).
"""

from __future__ import annotations

import fnmatch
import random
import threading
from dataclasses import dataclass, field
from typing import Any

KINDS = ("http", "task_failure", "download", "truncate")
DOWNLOAD_MODES = ("cut", "corrupt", "slow")


@dataclass
class FaultRule:
    kind: str
    pattern: str = "*"
    status: int = 503
    count: int | None = None  # None = unlimited (with rate)
    rate: float | None = None
    after: bool = False
    message: str = "Injected failure."
    mode: str = "cut"
    after_bytes: int = 0
    bytes_per_second: float = 1_000_000.0
    drop: int = 1
    skip: int = 0  # let this many matching requests through first
    delay: float = 0.0  # hold the request this long, then handle it normally (no error)
    seen: int = 0
    fired: int = 0
    rng: random.Random = field(default_factory=random.Random)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultRule:
        kind = data.get("kind", "http")
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; use one of {KINDS}")
        pattern = data.get("route") if kind == "http" else data.get("match")
        rule = cls(
            kind=kind,
            pattern=pattern or "*",
            status=int(data.get("status", 503)),
            count=None if data.get("count") is None else int(data["count"]),
            rate=None if data.get("rate") is None else float(data["rate"]),
            after=bool(data.get("after", False)),
            message=str(data.get("message", "Injected failure.")),
            mode=str(data.get("mode", "cut")),
            after_bytes=int(data.get("after_bytes", 0)),
            bytes_per_second=float(data.get("bytes_per_second", 1_000_000)),
            drop=int(data.get("drop", 1)),
            skip=int(data.get("skip", 0)),
            delay=float(data.get("delay", 0.0)),
            rng=random.Random(data.get("seed", 0)),
        )
        if rule.kind == "download" and rule.mode not in DOWNLOAD_MODES:
            raise ValueError(f"unknown download fault mode {rule.mode!r}; use one of {DOWNLOAD_MODES}")
        if rule.count is None and rule.rate is None:
            rule.count = 1
        return rule

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "pattern": self.pattern,
            "status": self.status,
            "count": self.count,
            "rate": self.rate,
            "after": self.after,
            "mode": self.mode,
            "skip": self.skip,
            "fired": self.fired,
        }


class FaultInjector:
    """Holds the active rules; thread-safe."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()

    def add(self, data: dict[str, Any]) -> FaultRule:
        rule = FaultRule.from_json(data)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.to_json() for r in self._rules]

    def take(self, kind: str, name: str) -> FaultRule | None:
        """The first rule of ``kind`` that fires for ``name`` (a route or a description/file name)."""
        with self._lock:
            for rule in self._rules:
                if rule.kind != kind or not fnmatch.fnmatchcase(name, rule.pattern):
                    continue
                rule.seen += 1
                if rule.seen <= rule.skip:
                    continue
                if rule.count is not None and rule.fired >= rule.count:
                    continue
                if rule.rate is not None and rule.rng.random() >= rule.rate:
                    continue
                rule.fired += 1
                return rule
        return None
