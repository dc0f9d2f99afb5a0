"""The emulator's evaluator of EE expression graphs.

Every call is first checked against EE's algorithm list (:mod:`gee_emulator.algorithms`). The
functions of :data:`EXACT` are evaluated exactly (numbers, strings, lists, dictionaries, dates,
filters, reducers, geometries, features and collections, images and image collections over the
synthetic catalogue); any other algorithm of the list produces a synthetic value of its return
type, logged as synthesized, unless the evaluation is strict (then it is refused).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from gee_emulator.algorithms import check_calls, function_names, signatures
from gee_emulator.values import (
    METRES_PER_DEGREE,
    Band,
    Closure,
    EvaluationError,
    Feature,
    FeatureCollection,
    Geometry,
    Image,
    ImageCollection,
    to_json,
)

__all__ = [
    "METRES_PER_DEGREE", "EvaluationError", "Evaluator", "Feature", "FeatureCollection", "Geometry", "Image",
    "check_calls", "evaluated_exactly", "function_names", "to_json", "unsupported_message",
]  # fmt: skip

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------- functions

TableLoader = Callable[[str], list[Feature]]
ImageLoader = Callable[[str], Image]


def _filled(v: Any) -> Callable[[np.ndarray, np.ndarray], Any]:
    return lambda lon, lat: np.full(lon.shape, v)


def _families() -> dict[str, Callable[..., Any]]:
    from gee_emulator import functions_image, functions_pure

    return {**functions_pure.FUNCTIONS, **functions_image.FUNCTIONS}


#: Every function the emulator evaluates exactly (filled on first use: the families import values).
EXACT: dict[str, Callable[..., Any]] = {}

#: names the evaluator handles itself (loading from the asset store and the catalogue)
_LOADERS = {"Collection.loadTable", "Image.load", "ImageCollection.load"}


def exact() -> dict[str, Callable[..., Any]]:
    if not EXACT:
        EXACT.update(_families())
    return EXACT


def _depends_on_arguments(values: Mapping[str, Any]) -> set[str]:
    """The value references whose subtree reads an argument of a user function (not cacheable
    across calls of that function)."""
    direct: dict[str, bool] = {}
    refs: dict[str, set[str]] = {}

    def scan(n: Any, out: set[str]) -> bool:
        found = False
        if isinstance(n, dict):
            if "argumentReference" in n:
                found = True
            if "valueReference" in n:
                out.add(n["valueReference"])
            for v in n.values():
                found = scan(v, out) or found
        elif isinstance(n, list):
            for v in n:
                found = scan(v, out) or found
        return found

    for key, node in values.items():
        refs[key] = set()
        direct[key] = scan(node, refs[key])
    dependent = {k for k, d in direct.items() if d}
    changed = True
    while changed:
        changed = False
        for key, used in refs.items():
            if key not in dependent and used & dependent:
                dependent.add(key)
                changed = True
    return dependent


class Evaluator:
    """Evaluates one expression graph.

    :param load_table: returns the features of a stored table asset (raises EvaluationError if absent).
    :param load_image: returns a stored image asset.
    :param strict: refuse algorithms that are not evaluated exactly instead of synthesizing them.
    :param catalogue: the synthetic public catalogue (``ImageCollection.load``, ``Image.load``).
    """

    def __init__(
        self,
        load_table: TableLoader,
        load_image: ImageLoader,
        *,
        strict: bool = False,
        catalogue: Any = None,
    ) -> None:
        self._load_table = load_table
        self._load_image = load_image
        self.strict = strict
        self.catalogue = catalogue
        self.synthesized: list[str] = []

    def evaluate(self, expression: Mapping[str, Any]) -> Any:
        values = expression.get("values") or {}
        dependent = _depends_on_arguments(values)
        cache: dict[str, Any] = {}

        def node(n: Mapping[str, Any], env: dict[str, Any] | None, local: dict[str, Any] | None) -> Any:
            if "constantValue" in n:
                return n["constantValue"]
            if "integerValue" in n:
                return int(n["integerValue"])
            if "valueReference" in n:
                ref = n["valueReference"]
                store = local if (local is not None and ref in dependent) else cache
                if ref not in store:
                    if ref not in values:
                        raise EvaluationError(f"Invalid expression: unknown value reference {ref!r}.")
                    store[ref] = node(values[ref], env, local)
                return store[ref]
            if "argumentReference" in n:
                name = n["argumentReference"]
                if env is None or name not in env:
                    raise EvaluationError(f"Invalid expression: unbound argument {name!r}.")
                return env[name]
            if "arrayValue" in n:
                return [node(v, env, local) for v in n["arrayValue"].get("values", [])]
            if "dictionaryValue" in n:
                return {k: node(v, env, local) for k, v in n["dictionaryValue"].get("values", {}).items()}
            if "functionDefinitionValue" in n:
                definition = n["functionDefinitionValue"]
                body = {"valueReference": definition["body"]}
                outer = dict(env or {})
                return Closure(
                    list(definition.get("argumentNames") or []),
                    lambda bound: node(body, {**outer, **bound}, {}),
                )
            if "functionInvocationValue" in n:
                call = n["functionInvocationValue"]
                args = {k: node(v, env, local) for k, v in (call.get("arguments") or {}).items()}
                if "functionReference" in call:
                    fn = node({"valueReference": call["functionReference"]}, env, local)
                    if not callable(fn):
                        raise EvaluationError("Invalid expression: a function reference is not a function.")
                    return fn(**args) if not isinstance(fn, Closure) else fn._call(args)
                return self._invoke(str(call.get("functionName")), args)
            if not n:
                return None
            raise EvaluationError(f"Invalid expression node: {sorted(n)}.")

        return node({"valueReference": expression["result"]}, None, None)

    def _invoke(self, name: str, args: dict[str, Any]) -> Any:
        if name == "Collection.loadTable":
            return FeatureCollection(list(self._load_table(str(args.get("tableId")))))
        if name in ("Image.load", "ImageCollection.load"):
            asset_id = str(args.get("id"))
            if self.catalogue is not None and self.catalogue.has(asset_id):
                return self.catalogue.load(asset_id, image=name == "Image.load")
            if name == "ImageCollection.load":
                raise EvaluationError(f"ImageCollection.load: ImageCollection asset '{asset_id}' not found.")
            return self._load_image(asset_id)
        fn = exact().get(name)
        if fn is None:
            if self.strict:
                raise EvaluationError(unsupported_message(name))
            return self._synthesize(name, args)
        try:
            return fn(**args)
        except TypeError as exc:
            raise EvaluationError(f"{name}: invalid arguments ({exc}).") from exc

    def _synthesize(self, name: str, args: dict[str, Any]) -> Any:
        """A value of the algorithm's return type, deterministic in its name: the computation is
        not modelled, but the graph around it runs."""
        sig = signatures().get(name)
        kind = (sig.return_type if sig else "Object").split("<")[0]
        self.synthesized.append(name)
        log.info("synthesized %s (returns %s): not evaluated exactly by the emulator", name, kind)
        seed = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)
        value = (seed % 1000) / 1000
        inputs = list(args.values())
        if kind == "Image":
            source = next((a for a in inputs if isinstance(a, Image)), None)
            names = [b.name for b in source.bands] if source else [name.rsplit(".", 1)[-1]]
            synthetic = Image(tuple(Band(n, _filled(value + i), "float64") for i, n in enumerate(names)))
            return replace(synthetic, clip=source.clip) if source else synthetic
        if kind in ("FeatureCollection", "Collection"):
            return next((a for a in inputs if isinstance(a, FeatureCollection)), FeatureCollection([]))
        if kind == "ImageCollection":
            return next((a for a in inputs if isinstance(a, ImageCollection)), ImageCollection(images=[]))
        if kind in ("Number", "Float", "Double"):
            return value
        if kind in ("Integer", "Long"):
            return seed % 1000
        if kind == "Boolean":
            return bool(seed % 2)
        if kind == "String":
            return name
        if kind.startswith("List"):
            return []
        if kind.startswith("Dictionary"):
            return {}
        if kind == "Reducer":  # a stand-in that reduces like mean
            from gee_emulator.functions_pure import REDUCERS

            return replace(REDUCERS["Reducer.mean"](), name=name)
        if kind == "Filter":
            from gee_emulator.values import Filter

            return Filter(lambda element: True)
        if kind in ("Geometry", "Feature", "Element"):
            return next((a for a in inputs if isinstance(a, (Geometry, Feature))), None)
        return next(iter(inputs), None)


def unsupported_message(name: str) -> str:
    return (
        f"Algorithm '{name}' is not evaluated by the emulator (strict evaluation); "
        "run it without --strict-evaluation to get a synthetic result."
    )


def evaluated_exactly() -> frozenset[str]:
    """The algorithms the emulator evaluates exactly (the rest it synthesizes, or refuses when strict)."""
    return frozenset(exact()) | _LOADERS
