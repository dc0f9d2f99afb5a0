"""The task state store of Airflow 3.3+ (``context["task_state_store"]``), read and written in one
place: what an earlier try of this task instance kept (an EE task, a split plan, a merge plan).

Before 3.3 there is no store: reads give ``None`` and writes are dropped, and each caller keeps
its pre-3.3 path. A stored value that is not a JSON object is not one this provider wrote (every
value it keeps is an object), so it reads as ``None`` too, as if nothing were kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class TaskState:
    """This task instance's stored state, by key.

    :param context: the task's Airflow context.
    """

    def __init__(self, context: Mapping[str, Any]) -> None:
        self._store = context.get("task_state_store")

    @property
    def available(self) -> bool:
        """Whether this Airflow keeps state across tries (3.3+)."""
        return self._store is not None

    def get(self, key: str) -> dict[str, Any] | None:
        """The object kept under ``key``, or ``None`` (nothing kept, no store, not an object)."""
        if self._store is None:
            return None
        value = self._store.get(key)
        return value if isinstance(value, dict) else None

    def set(self, key: str, value: Mapping[str, Any]) -> None:
        """Keep ``value`` (JSON) under ``key``; nothing without a store."""
        if self._store is not None:
            self._store.set(key, dict(value))

    def delete(self, *keys: str) -> None:
        """Forget what is kept under each of ``keys``; nothing without a store."""
        if self._store is not None:
            for key in keys:
                self._store.delete(key)
