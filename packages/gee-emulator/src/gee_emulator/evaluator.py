"""A small evaluator for EE expression graphs.

It supports a whitelist of EE functions, enough for tiled image exports (constants, pixel
coordinates, band maths, clipping), table exports (features, collections, stored tables, merge,
flatten) and point sampling. Anything else is rejected the way EE rejects an unknown algorithm, so
a test never passes by ignoring part of a computation.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import shapely
from pyproj import Transformer
from shapely.geometry import mapping, shape

METRES_PER_DEGREE = 111319.49079327357  # EE's scale for EPSG:4326 at the equator


class EvaluationError(Exception):
    """The expression cannot be evaluated; the message is what EE would report."""


# ---------------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Geometry:
    shape: Any  # shapely geometry in EPSG:4326 (lon/lat)

    def to_geojson(self) -> dict[str, Any]:
        return _plain(mapping(self.shape))


@dataclass
class Feature:
    geometry: Geometry | None
    properties: dict[str, Any] = field(default_factory=dict)

    def to_geojson(self, index: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "Feature",
            "geometry": self.geometry.to_geojson() if self.geometry else None,
            "properties": dict(self.properties),
        }
        if index is not None:
            out["id"] = index
        return out


@dataclass
class FeatureCollection:
    features: list[Feature]

    def to_geojson(self) -> dict[str, Any]:
        return {
            "type": "FeatureCollection",
            "columns": {},
            "features": [f.to_geojson(str(i)) for i, f in enumerate(self.features)],
        }


BandFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Band:
    name: str
    fn: BandFn  # (lon, lat) arrays -> values
    dtype: str  # numpy dtype name


@dataclass(frozen=True)
class Image:
    bands: tuple[Band, ...]
    clip: Any = None  # shapely geometry outside which pixels are masked
    region: Any = None  # export bounds (shapely, EPSG:4326)
    scale: float | None = None  # metres per pixel
    crs: str = "EPSG:4326"
    properties: tuple[tuple[str, Any], ...] = ()

    def sample(self, lon: np.ndarray, lat: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Band values at the given points and a mask (True = valid)."""
        values = {b.name: np.broadcast_to(b.fn(lon, lat), lon.shape).astype(b.dtype) for b in self.bands}
        if self.clip is None:
            valid = np.ones(lon.shape, dtype=bool)
        else:
            valid = shapely.contains_xy(self.clip, lon, lat) | shapely.intersects_xy(self.clip, lon, lat)
        return values, valid


def _plain(obj: Any) -> Any:
    """Tuples (as shapely's mapping returns them) to lists, for JSON."""
    if isinstance(obj, (list, tuple)):
        return [_plain(x) for x in obj]
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    return obj


def to_json(value: Any) -> Any:
    """An evaluated value as value:compute returns it."""
    if isinstance(value, (Geometry, Feature, FeatureCollection)):
        return value.to_geojson()
    if isinstance(value, Image):
        return {
            "type": "Image",
            "bands": [{"id": b.name, "data_type": {"type": "PixelType"}} for b in value.bands],
        }
    if isinstance(value, dt.datetime):
        return {"type": "Date", "value": int(value.timestamp() * 1000)}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


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


def _filled(v: Any) -> BandFn:
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

#: Every function the emulator evaluates; an expression naming another one is rejected at submission.
SUPPORTED_FUNCTIONS = frozenset(_PURE) | {"Collection.loadTable", "Image.load"}


class Evaluator:
    """Evaluates one expression graph.

    :param load_table: returns the features of a stored table asset (raises EvaluationError if absent).
    :param load_image: returns a stored image asset.
    """

    def __init__(self, load_table: TableLoader, load_image: ImageLoader) -> None:
        self._load_table = load_table
        self._load_image = load_image

    def evaluate(self, expression: Mapping[str, Any]) -> Any:
        values = expression.get("values") or {}
        cache: dict[str, Any] = {}

        def node(n: Mapping[str, Any]) -> Any:
            if "constantValue" in n:
                return n["constantValue"]
            if "integerValue" in n:
                return int(n["integerValue"])
            if "valueReference" in n:
                ref = n["valueReference"]
                if ref not in cache:
                    if ref not in values:
                        raise EvaluationError(f"Invalid expression: unknown value reference {ref!r}.")
                    cache[ref] = node(values[ref])
                return cache[ref]
            if "arrayValue" in n:
                return [node(v) for v in n["arrayValue"].get("values", [])]
            if "dictionaryValue" in n:
                return {k: node(v) for k, v in n["dictionaryValue"].get("values", {}).items()}
            if "functionInvocationValue" in n:
                call = n["functionInvocationValue"]
                name = call.get("functionName")
                args = {k: node(v) for k, v in call.get("arguments", {}).items()}
                return self._invoke(name, args)
            if "functionDefinitionValue" in n or "argumentReference" in n:
                raise EvaluationError("User-defined functions (map/iterate) are not supported by the emulator.")
            if not n:
                return None
            raise EvaluationError(f"Invalid expression node: {sorted(n)}.")

        return node({"valueReference": expression["result"]})

    def _invoke(self, name: str, args: dict[str, Any]) -> Any:
        if name == "Collection.loadTable":
            return FeatureCollection(list(self._load_table(str(args.get("tableId")))))
        if name == "Image.load":
            return self._load_image(str(args.get("id")))
        fn = _PURE.get(name)
        if fn is None:
            raise EvaluationError(unsupported_message(name))
        try:
            return fn(**args)
        except TypeError as exc:
            raise EvaluationError(f"{name}: invalid arguments ({exc}).") from exc


def unsupported_message(name: str) -> str:
    return f"Unknown or unsupported algorithm: {name!r} (the local emulator evaluates a fixed set of functions)."


def function_names(expression: Mapping[str, Any]) -> set[str]:
    """Every function an expression invokes."""
    names: set[str] = set()

    def walk(n: Any) -> None:
        if isinstance(n, dict):
            call = n.get("functionInvocationValue")
            if isinstance(call, dict) and "functionName" in call:
                names.add(call["functionName"])
            for v in n.values():
                walk(v)
        elif isinstance(n, list):
            for v in n:
                walk(v)

    walk(expression)
    return names
