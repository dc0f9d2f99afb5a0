"""TaskState: what an earlier try kept, read as an object or not at all."""

from __future__ import annotations

from typing import Any

from airflow_provider_gee.utils.task_state import TaskState


class Store:
    """Airflow 3.3's task state store as the context hands it over: get, set and delete by key."""

    def __init__(self, **values: Any) -> None:
        self.values = dict(values)

    def get(self, key: str) -> Any:
        return self.values.get(key)

    def set(self, key: str, value: Any) -> None:
        self.values[key] = value

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


def test_only_an_object_kept_under_the_key_is_read():
    state = TaskState({"task_state_store": Store(plan={"level": 1}, planted="level 1", listed=[{"level": 1}])})
    assert state.available
    assert state.get("plan") == {"level": 1}
    # values this provider never writes (it keeps objects only) read as nothing kept
    assert state.get("planted") is None and state.get("listed") is None and state.get("missing") is None


def test_writes_and_deletes_reach_the_store_and_are_dropped_without_one():
    store = Store()
    state = TaskState({"task_state_store": store})
    state.set("plan", {"level": 2})
    state.set("deleting", {"parts": ["a"]})
    assert store.values == {"plan": {"level": 2}, "deleting": {"parts": ["a"]}}
    state.delete("plan", "deleting")
    assert store.values == {}

    before_3_3 = TaskState({})
    assert not before_3_3.available and before_3_3.get("plan") is None
    before_3_3.set("plan", {"level": 2})  # nothing to keep it in: no error
    before_3_3.delete("plan")
