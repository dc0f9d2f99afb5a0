"""The emulator's evaluator of EE expression graphs.

Every call is first checked against EE's algorithm list (:mod:`gee_emulator.algorithms`). The
functions of :data:`EXACT` are evaluated exactly (numbers, strings, lists, dictionaries, dates,
filters, reducers, geometries, features and collections, images and image collections over the
synthetic catalogue); any other algorithm of the list produces a synthetic value of its return
type, logged as synthesized, unless the evaluation is strict (then it is refused).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import shapely
from pyproj import Transformer
from shapely.geometry import shape

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


def _geometry(kind: str) -> Callable[..., Geometry]:
    def build(
        coordinates: Any = None,
        crs: Any = None,
        geodesic: Any = None,
        maxError: Any = None,
        evenOdd: Any = None,
        **_: Any,
    ) -> Geometry:
        coords = coordinates
        if kind == "Rectangle":
            flat = np.asarray(coords, dtype=float).ravel()
            if flat.size != 4:
                raise EvaluationError("GeometryConstructors.Rectangle: expected 2 corner points.")
            geom = shapely.box(*flat)
        else:
            try:
                geom = shape({"type": kind, "coordinates": coords})
            except Exception as exc:  # shapely raises several types for malformed input
                raise EvaluationError(f"GeometryConstructors.{kind}: invalid coordinates ({exc}).") from exc
        code = crs.get("crs") if isinstance(crs, dict) else crs
        if code not in (None, "EPSG:4326"):
            try:
                to_wgs84 = Transformer.from_crs(str(code), "EPSG:4326", always_xy=True)
            except Exception as exc:
                raise EvaluationError(f"GeometryConstructors.{kind}: unknown projection {code!r}.") from exc
            # densify first: straight edges in a projected CRS are curves in lon/lat
            geom = shapely.transform(
                shapely.segmentize(geom, max(geom.length, 1.0) / 64),
                lambda xy: np.column_stack(to_wgs84.transform(xy[:, 0], xy[:, 1])),
            )
        return Geometry(geom)

    return build


def _as_geometry(value: Any) -> Geometry:
    if isinstance(value, Geometry):
        return value
    if isinstance(value, Feature) and value.geometry is not None:
        return value.geometry
    if isinstance(value, FeatureCollection):
        return Geometry(shapely.union_all([f.geometry.shape for f in value.features if f.geometry]))
    if isinstance(value, dict) and "type" in value:
        return Geometry(shape(value))
    raise EvaluationError(f"Expected a Geometry, got {type(value).__name__}.")


def _as_image(value: Any) -> Image:
    if isinstance(value, Image):
        return value
    if isinstance(value, (int, float)):
        return _constant(value)
    raise EvaluationError(f"Expected an Image, got {type(value).__name__}.")


def _as_collection(value: Any) -> FeatureCollection:
    if isinstance(value, FeatureCollection):
        return value
    raise EvaluationError(f"Expected a FeatureCollection, got {type(value).__name__}.")


def _dtype_of(value: Any) -> str:
    return "int32" if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else "float64"


def _filled(v: Any) -> Callable[[np.ndarray, np.ndarray], Any]:
    return lambda lon, lat: np.full(lon.shape, v)


def _constant(value: Any) -> Image:
    values = value if isinstance(value, list) else [value]
    names = ["constant"] if len(values) == 1 else [f"constant_{i}" for i in range(len(values))]
    return Image(tuple(Band(n, _filled(v), _dtype_of(v)) for n, v in zip(names, values, strict=True)))


def _pixel_lon_lat() -> Image:
    return Image(
        (
            Band("longitude", lambda lon, lat: lon, "float64"),
            Band("latitude", lambda lon, lat: lat, "float64"),
        )
    )


def _select(input: Any, bandSelectors: list[Any], newNames: list[str] | None = None) -> Image:
    img = _as_image(input)
    by_name = {b.name: b for b in img.bands}
    chosen: list[Band] = []
    for sel in bandSelectors:
        if isinstance(sel, int):
            chosen.append(img.bands[sel])
        elif sel in by_name:
            chosen.append(by_name[sel])
        else:
            raise EvaluationError(
                f"Image.select: Pattern '{sel}' did not match any bands. Available bands: {list(by_name)}"
            )
    if newNames:
        chosen = [replace(b, name=n) for b, n in zip(chosen, newNames, strict=True)]
    return replace(img, bands=tuple(chosen))


def _rename(input: Any, names: list[str]) -> Image:
    img = _as_image(input)
    if len(names) != len(img.bands):
        raise EvaluationError(f"Image.rename: Can't rename {len(img.bands)} bands to {len(names)} names.")
    return replace(img, bands=tuple(replace(b, name=n) for b, n in zip(img.bands, names, strict=True)))


def _add_bands(dstImg: Any, srcImg: Any, names: Any = None, overwrite: bool = False) -> Image:
    dst, src = _as_image(dstImg), _as_image(srcImg)
    existing = {b.name for b in dst.bands}
    clash = [b.name for b in src.bands if b.name in existing]
    if clash and not overwrite:
        raise EvaluationError(f"Image.addBands: Band names must be unique: {clash}.")
    kept = tuple(b for b in dst.bands if b.name not in {s.name for s in src.bands})
    return replace(dst, bands=kept + src.bands)


def _binary(op: Callable[[np.ndarray, np.ndarray], np.ndarray], name: str) -> Callable[..., Image]:
    def apply(image1: Any, image2: Any) -> Image:
        a, b = _as_image(image1), _as_image(image2)
        if len(b.bands) == 1:
            b = replace(b, bands=b.bands * len(a.bands))
        if len(a.bands) != len(b.bands):
            raise EvaluationError(f"Image.{name}: band counts differ ({len(a.bands)} and {len(b.bands)}).")
        bands = tuple(
            Band(
                x.name,
                (lambda f, g: lambda lon, lat: op(f(lon, lat), g(lon, lat)))(x.fn, y.fn),
                "float64" if "float" in x.dtype + y.dtype or name == "divide" else x.dtype,
            )
            for x, y in zip(a.bands, b.bands, strict=True)
        )
        return replace(a, bands=bands, clip=_intersect(a.clip, b.clip))

    return apply


def _cast(dtype: str) -> Callable[..., Image]:
    def cast(value: Any) -> Image:
        img = _as_image(value)
        return replace(img, bands=tuple(replace(b, dtype=dtype) for b in img.bands))

    return cast


def _intersect(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return shapely.intersection(a, b)


def _clip(input: Any, geometry: Any) -> Image:
    img = _as_image(input)
    return replace(img, clip=_intersect(img.clip, _as_geometry(geometry).shape))


def _clip_to_bounds_and_scale(
    input: Any,
    geometry: Any = None,
    width: Any = None,
    height: Any = None,
    maxDimension: Any = None,
    scale: Any = None,
) -> Image:
    img = _as_image(input)
    region = _as_geometry(geometry).shape if geometry is not None else img.region
    if region is None:
        raise EvaluationError("Image.clipToBoundsAndScale: a region is required.")
    out = replace(img, region=region, clip=_intersect(img.clip, shapely.box(*region.bounds)))
    if scale is not None:
        out = replace(out, scale=float(scale))
    elif width or height or maxDimension:
        minx, miny, maxx, maxy = region.bounds
        pixels = float(width or height or maxDimension)
        out = replace(out, scale=max(maxx - minx, maxy - miny) / pixels * METRES_PER_DEGREE)
    return out


def _projection(crs: Any = None, transform: Any = None, transformWkt: Any = None) -> dict[str, Any]:
    return {"crs": crs, "transform": transform}


def _reproject(image: Any, crs: Any = None, crsTransform: Any = None, scale: Any = None) -> Image:
    img = _as_image(image)
    proj = crs if isinstance(crs, dict) else {"crs": crs}
    out = replace(img, crs=str(proj.get("crs") or img.crs))
    if scale is not None:
        out = replace(out, scale=float(scale))
    elif crsTransform:
        out = replace(out, scale=abs(float(crsTransform[0])) * (METRES_PER_DEGREE if out.crs == "EPSG:4326" else 1))
    return out


def _set_default_projection(image: Any, crs: Any = None, crsTransform: Any = None, scale: Any = None) -> Image:
    """The projection later operations default to; nothing is resampled (``ee`` adds it when an
    image export names a ``crs`` without a ``crs_transform``; the export's own crs/scale set the grid)."""
    img = _as_image(image)
    proj = crs if isinstance(crs, dict) else {"crs": crs}
    return replace(img, crs=str(proj.get("crs") or img.crs))


def _sample_regions(
    image: Any,
    collection: Any,
    properties: Any = None,
    scale: Any = None,
    projection: Any = None,
    tileScale: Any = None,
    geometries: bool = False,
) -> FeatureCollection:
    img, coll = _as_image(image), _as_collection(collection)
    points = [f for f in coll.features if f.geometry is not None]
    if not points:
        return FeatureCollection([])
    centroids = [f.geometry.shape.representative_point() for f in points]
    lon = np.array([p.x for p in centroids])
    lat = np.array([p.y for p in centroids])
    values, valid = img.sample(lon, lat)
    out = []
    for i, f in enumerate(points):
        if not valid[i]:
            continue  # EE drops features over masked pixels
        props = {k: v for k, v in f.properties.items() if properties is None or k in properties}
        props.update({name: values[name][i].item() for name in values})
        out.append(Feature(f.geometry if geometries else None, props))
    return FeatureCollection(out)


def _feature(geometry: Any = None, metadata: Any = None) -> Feature:
    return Feature(_as_geometry(geometry) if geometry is not None else None, dict(metadata or {}))


def _collection(features: Any) -> FeatureCollection | list[FeatureCollection]:
    """A collection of features, or (as EE allows before ``flatten``) of collections."""
    if features and all(isinstance(f, FeatureCollection) for f in features):
        return list(features)
    out = []
    for f in features:
        if isinstance(f, Feature):
            out.append(f)
        elif isinstance(f, Geometry):
            out.append(Feature(f))
        else:
            raise EvaluationError(f"Collection: expected Features, got {type(f).__name__}.")
    return FeatureCollection(out)


def _merge(collection1: Any, collection2: Any) -> FeatureCollection:
    return FeatureCollection(_as_collection(collection1).features + _as_collection(collection2).features)


def _flatten(collection: Any) -> FeatureCollection:
    if isinstance(collection, FeatureCollection):
        return collection
    if isinstance(collection, list):
        return FeatureCollection([f for c in collection for f in _as_collection(c).features])
    raise EvaluationError("Collection.flatten: expected a collection of collections.")


def _set(object: Any, key: str | None = None, value: Any = None, properties: Any = None) -> Any:
    updates = dict(properties or {})
    if key is not None:
        updates[key] = value
    if isinstance(object, Feature):
        return Feature(object.geometry, {**object.properties, **updates})
    if isinstance(object, Image):
        return replace(object, properties=tuple({**dict(object.properties), **updates}.items()))
    return object


def _limit(collection: Any, limit: Any = None, key: Any = None, ascending: Any = True) -> FeatureCollection:
    feats = list(_as_collection(collection).features)
    if key:
        feats.sort(key=lambda f: f.properties.get(key), reverse=not ascending)
    return FeatureCollection(feats[: int(limit)] if limit is not None else feats)


def _date(value: Any, timeZone: Any = None) -> dt.datetime:
    if isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(value / 1000, tz=dt.UTC)
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise EvaluationError(f"Date: Unable to parse date '{value}'.") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _size(collection: Any) -> int:
    if isinstance(collection, list):
        return len(collection)
    return len(_as_collection(collection).features)


def _first(collection: Any) -> Feature | None:
    feats = _as_collection(collection).features
    return feats[0] if feats else None


def _number(op: Callable[[Any, Any], Any]) -> Callable[..., Any]:
    """``Number.<op>(left, right)`` of EE's algorithm list: plain number maths."""

    def apply(left: Any, right: Any) -> Any:
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (left, right)):
            raise EvaluationError(f"Number: expected numbers, got {left!r} and {right!r}.")
        return op(left, right)

    return apply


_NUMBER_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "add": lambda a, b: a + b,
    "subtract": lambda a, b: a - b,
    "multiply": lambda a, b: a * b,
    # EE: "Divides the first value by the second, returning 0 for division by 0"
    "divide": lambda a, b: a / b if b else 0,
    "min": min,
    "max": max,
}

_PURE: dict[str, Callable[..., Any]] = {
    **{f"Number.{name}": _number(op) for name, op in _NUMBER_OPS.items()},
    **{
        f"GeometryConstructors.{k}": _geometry(k)
        for k in (
            "Point",
            "MultiPoint",
            "LineString",
            "LinearRing",
            "MultiLineString",
            "Polygon",
            "MultiPolygon",
            "Rectangle",
        )
    },
    "Feature": _feature,
    "Collection": _collection,
    "Collection.merge": _merge,
    "Collection.flatten": _flatten,
    "Collection.size": _size,
    "Collection.first": _first,
    "Collection.limit": _limit,
    "Element.set": _set,
    "Element.setMulti": _set,
    "Date": _date,
    "Image.constant": _constant,
    "Image.pixelLonLat": _pixel_lon_lat,
    "Image.select": _select,
    "Image.rename": _rename,
    "Image.addBands": _add_bands,
    "Image.add": _binary(np.add, "add"),
    "Image.subtract": _binary(np.subtract, "subtract"),
    "Image.multiply": _binary(np.multiply, "multiply"),
    "Image.divide": _binary(np.divide, "divide"),
    "Image.toFloat": _cast("float32"),
    "Image.toDouble": _cast("float64"),
    "Image.toInt": _cast("int32"),
    "Image.toInt16": _cast("int16"),
    "Image.toInt32": _cast("int32"),
    "Image.toByte": _cast("uint8"),
    "Image.clip": _clip,
    "Image.clipToBoundsAndScale": _clip_to_bounds_and_scale,
    "Image.reproject": _reproject,
    "Image.setDefaultProjection": _set_default_projection,
    "Image.sampleRegions": _sample_regions,
    "Projection": _projection,
}


def _families() -> dict[str, Callable[..., Any]]:
    from gee_emulator import functions_image, functions_pure

    return {**_PURE, **functions_pure.FUNCTIONS, **functions_image.FUNCTIONS}


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
