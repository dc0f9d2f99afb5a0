"""EE's algorithm list, and the check EE makes of every call in an expression against it.

The list is the one ``earthengine-api`` ships (``ee/tests/algorithms.json``, the answer of
``GET /v1/projects/*/algorithms``: names, arguments, which are optional, return types). The client
builds ``ee.Image.*``, ``ee.Number.*`` ... from it, so every call a real script sends is in it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any


@dataclass(frozen=True)
class Signature:
    name: str
    arguments: tuple[str, ...]
    required: frozenset[str]
    return_type: str


@functools.cache
def algorithms_json() -> bytes:
    """The list as bytes (about 740 kB), read once."""
    return resources.files("ee").joinpath("tests/algorithms.json").read_bytes()


@functools.cache
def signatures() -> dict[str, Signature]:
    out = {}
    for algorithm in json.loads(algorithms_json())["algorithms"]:
        name = algorithm["name"].removeprefix("algorithms/")
        arguments = algorithm.get("arguments") or []
        out[name] = Signature(
            name=name,
            arguments=tuple(a["argumentName"] for a in arguments),
            required=frozenset(a["argumentName"] for a in arguments if not a.get("optional")),
            return_type=str(algorithm.get("returnType") or "Object"),
        )
    return out


def calls(expression: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every named function invocation in an expression graph (calls of user functions, by
    ``functionReference``, are not checked against the list: their arguments are the user's)."""
    stack: list[Any] = [expression]
    while stack:
        n = stack.pop()
        if isinstance(n, dict):
            call = n.get("functionInvocationValue")
            if isinstance(call, dict) and "functionName" in call:
                yield call
            stack.extend(n.values())
        elif isinstance(n, list):
            stack.extend(n)


def function_names(expression: Mapping[str, Any]) -> set[str]:
    """Every algorithm an expression invokes by name."""
    return {str(c["functionName"]) for c in calls(expression)}


def check_calls(expression: Mapping[str, Any]) -> str | None:
    """EE's refusal of the first call that does not match the algorithm list, or None.

    The messages are those of the ``ee`` client's own checks (``ee/apifunction.py``,
    ``ee/function.py``), which a request from an outdated or hand-written client meets here;
    Google does not publish the server's wording.
    """
    known = signatures()
    for call in calls(expression):
        name = str(call["functionName"])
        sig = known.get(name)
        if sig is None:
            return f"Unknown built-in function name: {name}"
        given = set((call.get("arguments") or {}).keys())
        missing = [a for a in sig.arguments if a in sig.required and a not in given]
        if missing:
            return f"Required argument ({missing[0]}) missing to function: {name}"
        unexpected = given - set(sig.arguments)
        if unexpected:
            return f"Unrecognized arguments {unexpected} to function: {name}"
    return None
