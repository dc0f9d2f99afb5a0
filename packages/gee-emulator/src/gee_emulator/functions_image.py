"""Images and image collections, evaluated exactly: band maths with EE's band matching and masks,
masking (``updateMask``, ``where``, QA bits), indices (``normalizedDifference``, ``expression``),
collection reductions (any reducer, ``median``, ``qualityMosaic``), terrain slope and sampling
(``reduceRegions``, ``reduceRegion``, ``sample``).

An image is lazy: each band is a function of longitude and latitude arrays returning a masked
array, so an export computes exactly the pixels of its grid, window by window.
"""

from __future__ import annotations

import ast
import datetime as dt
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any, cast

import numpy as np
import shapely

from gee_emulator.functions_pure import BINARY, CASTS, UNARY, _feature_collection, as_date, as_geometry, properties_of
from gee_emulator.values import (
    METRES_PER_DEGREE,
    Band,
    EvaluationError,
    Feature,
    FeatureCollection,
    Geometry,
    Image,
    ImageCollection,
    Reducer,
)


def memo(fn: Callable[[np.ndarray, np.ndarray], Any]) -> Callable[[np.ndarray, np.ndarray], Any]:
    """Remember the last window's values: every band of a chain is asked for the same points
    (the same arrays) by each operation above it. The arrays are held, so their identity cannot
    be reused by another window while they are the key."""
    # one tuple, replaced whole: concurrent exports sharing a function never mix key and value
    last: list[tuple[Any, Any, Any]] = [(None, None, None)]

    def cached(lon: np.ndarray, lat: np.ndarray) -> Any:
        key_lon, key_lat, value = last[0]
        if key_lon is not lon or key_lat is not lat:
            value = fn(lon, lat)
            last[0] = (lon, lat, value)
        return value

    return cached


def as_image(value: Any, fn: str = "Image") -> Image:
    if isinstance(value, Image):
        return value
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, (int, float, np.number)):
        return constant(value)
    if isinstance(value, list) and all(isinstance(v, (int, float)) for v in value):
        return constant(value)
    raise EvaluationError(f"{fn}: expected an Image, got {type(value).__name__}.")


def _dtype_of(value: Any) -> str:
    return "int32" if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else "float64"


def constant(value: Any) -> Image:
    values = value if isinstance(value, list) else [value]
    names = ["constant"] if len(values) == 1 else [f"constant_{i}" for i in range(len(values))]
    return Image(tuple(Band(n, _const(v), _dtype_of(v)) for n, v in zip(names, values, strict=True)))


def _const(value: Any) -> Callable[[np.ndarray, np.ndarray], Any]:
    return lambda lon, lat: np.asarray(value)


def _pick(fn: Callable[[np.ndarray, np.ndarray], Any], k: int) -> Callable[[np.ndarray, np.ndarray], Any]:
    """Output ``k`` of a function that computes several outputs at once."""
    return lambda lon, lat: fn(lon, lat)[k]


def _result_dtype(name: str, a: str, b: str) -> str:
    if name in ("and", "or", "lt", "lte", "gt", "gte", "eq", "neq"):
        return "uint8"
    if name.startswith(("bitwise", "left", "right")):
        return "int64"
    if name in ("divide", "pow", "atan2", "hypot") or "float" in a + b:
        return "float64"
    return np.promote_types(a, b).name


def _binary(name: str) -> Callable[..., Image]:
    op = BINARY[name]

    def apply(image1: Any, image2: Any) -> Image:
        a, b = as_image(image1, f"Image.{name}"), as_image(image2, f"Image.{name}")
        if len(a.bands) == 1 and len(b.bands) > 1:
            left, right, names = a.bands * len(b.bands), b.bands, [x.name for x in b.bands]
        elif len(b.bands) == 1:
            left, right, names = a.bands, b.bands * len(a.bands), [x.name for x in a.bands]
        elif len(a.bands) == len(b.bands):
            left, right, names = a.bands, b.bands, [x.name for x in a.bands]
        else:
            raise EvaluationError(
                f"Image.{name}: Images must contain the same number of bands or only 1 band. "
                f"Got {len(a.bands)} and {len(b.bands)}."
            )
        bands = tuple(
            Band(
                n,
                memo((lambda f, g: lambda lon, lat: _ufunc(op, f(lon, lat), g(lon, lat)))(x.fn, y.fn)),
                _result_dtype(name, x.dtype, y.dtype),
            )
            for n, x, y in zip(names, left, right, strict=True)
        )
        return replace(a, bands=bands, clip=_intersect(a.clip, b.clip), properties=())

    return apply


def _ufunc(op: Callable[..., Any], *arrays: Any) -> Any:
    masks = [np.ma.getmaskarray(x) if np.ma.isMaskedArray(x) else None for x in arrays]
    data = [np.ma.getdata(x) for x in arrays]
    with np.errstate(all="ignore"):
        out = op(*data)
    present = [m for m in masks if m is not None]
    if not present:
        return out
    mask = present[0]
    for m in present[1:]:
        mask = mask | m
    return np.ma.masked_array(out, mask=np.broadcast_to(mask, np.shape(out)))


def _unary(name: str) -> Callable[..., Image]:
    op = UNARY[name]

    def apply(value: Any) -> Image:
        img = as_image(value, f"Image.{name}")
        dtype = (
            "float64"
            if name not in ("abs", "floor", "ceil", "round", "signum", "not", "bitwiseNot", "bitCount")
            else None
        )
        return replace(
            img,
            bands=tuple(
                Band(b.name, memo((lambda f: lambda lon, lat: _ufunc(op, f(lon, lat)))(b.fn)), dtype or b.dtype)
                for b in img.bands
            ),
        )

    return apply


def _cast(dtype: str) -> Callable[..., Image]:
    def apply(value: Any) -> Image:
        img = as_image(value, "Image cast")
        return replace(img, bands=tuple(replace(b, dtype=dtype) for b in img.bands))

    return apply


def _intersect(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return shapely.intersection(a, b)


# ------------------------------------------------------------------------------------ bands


def _match(selector: Any, names: list[str]) -> list[int]:
    if isinstance(selector, int):
        if not -len(names) <= selector < len(names):
            raise EvaluationError(f"Image.select: Band index {selector} out of range.")
        return [selector % len(names)]
    hits = [i for i, n in enumerate(names) if re.fullmatch(str(selector), n)]
    if not hits:
        raise EvaluationError(
            f"Image.select: Pattern '{selector}' did not match any bands. Available bands: [{', '.join(names)}]"
        )
    return hits


def select(input: Any, bandSelectors: Any, newNames: Any = None) -> Image:
    img = as_image(input, "Image.select")
    names = [b.name for b in img.bands]
    chosen = [img.bands[i] for sel in bandSelectors for i in _match(sel, names)]
    if newNames:
        if len(newNames) != len(chosen):
            raise EvaluationError(f"Image.select: {len(chosen)} bands selected, {len(newNames)} new names given.")
        chosen = [replace(b, name=str(n)) for b, n in zip(chosen, newNames, strict=True)]
    return replace(img, bands=tuple(chosen))


def rename(input: Any, names: Any) -> Image:
    img = as_image(input, "Image.rename")
    if len(names) != len(img.bands):
        raise EvaluationError(f"Image.rename: Can't rename {len(img.bands)} bands to {len(names)} names.")
    return replace(img, bands=tuple(replace(b, name=str(n)) for b, n in zip(img.bands, names, strict=True)))


def add_bands(dstImg: Any, srcImg: Any, names: Any = None, overwrite: Any = False) -> Image:
    dst, src = as_image(dstImg, "Image.addBands"), as_image(srcImg, "Image.addBands")
    added = list(src.bands) if names is None else [b for b in src.bands if b.name in names]
    existing = {b.name for b in dst.bands}
    clash = [b.name for b in added if b.name in existing]
    if clash and not overwrite:
        raise EvaluationError(f"Image.addBands: Band names must be unique; '{clash[0]}' is already present.")
    replaced = {b.name: b for b in added}
    bands = [replaced.pop(b.name, b) for b in dst.bands]
    return replace(dst, bands=tuple(bands + list(replaced.values())))


def _with_mask(fn: Callable[..., Any], mask_fn: Callable[..., Any], combine: bool) -> Callable[..., Any]:
    def apply(lon: np.ndarray, lat: np.ndarray) -> Any:
        values, m = fn(lon, lat), mask_fn(lon, lat)
        data = np.ma.getdata(values)
        shape = np.broadcast_shapes(np.shape(data), np.shape(m))
        new_mask = np.broadcast_to(np.ma.getmaskarray(m) | (np.ma.getdata(m) == 0), shape)
        if combine and np.ma.isMaskedArray(values):
            new_mask = new_mask | np.broadcast_to(np.ma.getmaskarray(values), shape)
        return np.ma.masked_array(np.broadcast_to(data, shape), mask=new_mask)

    return memo(apply)


def update_mask(image: Any, mask: Any) -> Image:
    img, m = as_image(image, "Image.updateMask"), as_image(mask, "Image.updateMask")
    masks = m.bands * len(img.bands) if len(m.bands) == 1 else m.bands
    if len(masks) != len(img.bands):
        raise EvaluationError("Image.updateMask: the mask must have 1 band or as many as the image.")
    return replace(
        img,
        bands=tuple(replace(b, fn=_with_mask(b.fn, k.fn, combine=True)) for b, k in zip(img.bands, masks, strict=True)),
    )


def mask(image: Any, mask: Any = None) -> Any:
    img = as_image(image, "Image.mask")
    if mask is None:  # the image's mask, as an image
        return replace(
            img,
            bands=tuple(
                Band(
                    b.name,
                    memo(
                        (lambda f: lambda lon, lat: (~np.ma.getmaskarray(np.ma.asarray(f(lon, lat)))).astype(np.uint8))(
                            b.fn
                        )
                    ),
                    "uint8",
                )
                for b in img.bands
            ),
        )
    m = as_image(mask, "Image.mask")
    masks = m.bands * len(img.bands) if len(m.bands) == 1 else m.bands
    return replace(
        img,
        bands=tuple(
            replace(b, fn=_with_mask(b.fn, k.fn, combine=False)) for b, k in zip(img.bands, masks, strict=True)
        ),
    )


def self_mask(image: Any) -> Image:
    img = as_image(image, "Image.selfMask")
    return replace(img, bands=tuple(replace(b, fn=_with_mask(b.fn, b.fn, combine=True)) for b in img.bands))


def unmask(input: Any, value: Any = None, sameFootprint: Any = True) -> Image:
    img, fill = as_image(input, "Image.unmask"), as_image(0 if value is None else value, "Image.unmask")
    fills = fill.bands * len(img.bands) if len(fill.bands) == 1 else fill.bands

    def filled(f: Callable[..., Any], g: Callable[..., Any]) -> Callable[..., Any]:
        def apply(lon: np.ndarray, lat: np.ndarray) -> Any:
            v, w = np.ma.asarray(f(lon, lat)), g(lon, lat)
            shape = np.broadcast_shapes(v.shape, np.shape(w))
            return np.where(
                np.broadcast_to(np.ma.getmaskarray(v), shape),
                np.broadcast_to(np.ma.getdata(w), shape),
                np.broadcast_to(np.ma.getdata(v), shape),
            )

        return memo(apply)

    return replace(
        img,
        clip=img.clip if sameFootprint is not False else None,
        bands=tuple(replace(b, fn=filled(b.fn, k.fn)) for b, k in zip(img.bands, fills, strict=True)),
    )


def where(input: Any, test: Any, value: Any) -> Image:
    img, t, v = as_image(input, "Image.where"), as_image(test, "Image.where"), as_image(value, "Image.where")
    tests = t.bands * len(img.bands) if len(t.bands) == 1 else t.bands
    values = v.bands * len(img.bands) if len(v.bands) == 1 else v.bands

    def choose(f: Callable[..., Any], g: Callable[..., Any], h: Callable[..., Any]) -> Callable[..., Any]:
        def apply(lon: np.ndarray, lat: np.ndarray) -> Any:
            base, cond, new = f(lon, lat), g(lon, lat), h(lon, lat)
            take = np.ma.filled(np.ma.asarray(cond) != 0, False)
            out = np.where(take, np.ma.getdata(new), np.ma.getdata(base))
            mask = np.where(take, np.ma.getmaskarray(np.ma.asarray(new)), np.ma.getmaskarray(np.ma.asarray(base)))
            return np.ma.masked_array(out, mask=np.broadcast_to(mask, np.shape(out)))

        return memo(apply)

    return replace(
        img,
        bands=tuple(
            Band(b.name, choose(b.fn, c.fn, d.fn), np.promote_types(b.dtype, d.dtype).name)
            for b, c, d in zip(img.bands, tests, values, strict=True)
        ),
    )


def normalized_difference(input: Any, bandNames: Any = None) -> Image:
    img = as_image(input, "Image.normalizedDifference")
    if bandNames is None:
        if len(img.bands) < 2:
            raise EvaluationError("Image.normalizedDifference: the image needs 2 bands.")
        first, second = img.bands[0], img.bands[1]
    else:
        if len(bandNames) != 2:
            raise EvaluationError("Image.normalizedDifference: bandNames must name 2 bands.")
        first, second = (img.bands[_match(n, [b.name for b in img.bands])[0]] for n in bandNames)

    def nd(lon: np.ndarray, lat: np.ndarray) -> Any:
        a = np.ma.asarray(first.fn(lon, lat)).astype(float)
        b = np.ma.asarray(second.fn(lon, lat)).astype(float)
        with np.errstate(all="ignore"):
            return (a - b) / (a + b)

    return Image((Band("nd", memo(nd), "float32"),), clip=img.clip, properties=img.properties, footprint=img.footprint)


def unit_scale(input: Any, low: Any, high: Any) -> Image:
    img = as_image(input, "Image.unitScale")
    return _binary("divide")(_binary("subtract")(img, float(low)), float(high) - float(low))


def band_names(image: Any) -> list[str]:
    return [b.name for b in as_image(image, "Image.bandNames").bands]


def image_date(image: Any) -> dt.datetime:
    start = as_image(image, "Image.date").props.get("system:time_start")
    if start is None:
        raise EvaluationError("Image.date: the image has no 'system:time_start' property.")
    return as_date(start)


def clip(input: Any, geometry: Any) -> Image:
    img = as_image(input, "Image.clip")
    return replace(img, clip=_intersect(img.clip, as_geometry(geometry, "Image.clip").shape))


# ------------------------------------------------------------------------------------ expressions

_OPS = {
    ast.Add: "add",
    ast.Sub: "subtract",
    ast.Mult: "multiply",
    ast.Div: "divide",
    ast.Pow: "pow",
    ast.Mod: "mod",
    ast.Gt: "gt",
    ast.GtE: "gte",
    ast.Lt: "lt",
    ast.LtE: "lte",
    ast.Eq: "eq",
    ast.NotEq: "neq",
}


def parse_expression(expression: Any, argName: Any, vars: Any, mapFreeVarsToDefaultImageBands: Any = True) -> Any:
    """``Image.parseExpression``: EE's expression language (numbers, variables, ``b('name')`` or
    ``b(0)``, ``+ - * / % **``, comparisons, ``&& || !``, ``?:``) as a function of its variables."""
    text = str(expression)
    # to Python: JS boolean operators, and the ternary `c ? a : b` to a call we evaluate
    py = text.replace("&&", " and ").replace("||", " or ")
    py = re.sub(r"!(?!=)", " not ", py)
    py = _ternary(py)
    try:
        tree = ast.parse(py.strip(), mode="eval")
    except SyntaxError as exc:
        raise EvaluationError(f"Image.parseExpression: Expression parse error at '{text}': {exc.msg}.") from exc

    def function(**bound: Any) -> Image:
        default = bound.get(str(argName))
        band_of = {n: as_image(v) for n, v in bound.items() if n != argName}

        def ev(node: ast.AST) -> Any:
            if isinstance(node, ast.Expression):
                return ev(node.body)
            if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
                return constant(node.value)
            if isinstance(node, ast.Name):
                if node.id in band_of:
                    return band_of[node.id]
                if mapFreeVarsToDefaultImageBands is not False and isinstance(default, Image):
                    return select(default, [node.id])
                raise EvaluationError(f"Image.parseExpression: Variable '{node.id}' is not defined.")
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in band_of:
                return select(band_of[node.value.id], [node.attr])
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                args = [a.value for a in node.args if isinstance(a, ast.Constant)]
                if node.func.id == "b" and len(args) == 1:
                    return select(default, [args[0]])
                if node.func.id == "_if" and len(node.args) == 3:
                    return where(ev(node.args[2]), ev(node.args[0]), ev(node.args[1]))
                if node.func.id in UNARY and len(node.args) == 1:
                    return _unary(node.func.id)(ev(node.args[0]))
                if node.func.id in ("min", "max") and len(node.args) == 2:
                    return _binary(node.func.id)(ev(node.args[0]), ev(node.args[1]))
                raise EvaluationError(f"Image.parseExpression: Unknown function '{node.func.id}'.")
            if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
                return _binary(_OPS[type(node.op)])(ev(node.left), ev(node.right))
            if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
                return _binary("multiply")(ev(node.operand), -1)
            if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd):
                return ev(node.operand)
            if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
                return _unary("not")(ev(node.operand))
            if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _OPS:
                return _binary(_OPS[type(node.ops[0])])(ev(node.left), ev(node.comparators[0]))
            if isinstance(node, ast.BoolOp):
                out = ev(node.values[0])
                for v in node.values[1:]:
                    out = _binary("and" if isinstance(node.op, ast.And) else "or")(out, ev(v))
                return out
            raise EvaluationError(f"Image.parseExpression: Unsupported syntax in '{text}'.")

        return ev(tree)

    return function


def _ternary(text: str) -> str:
    """``c ? a : b`` (right-associative, lowest precedence) as ``_if(c, a, b)``."""
    depth, q = 0, -1
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "?" and depth == 0:
            q = i
            break
    if q < 0:
        inner = re.sub(r"\(([^()]*\?[^()]*)\)", lambda m: "(" + _ternary(m.group(1)) + ")", text)
        return inner
    depth, nested, colon = 0, 0, -1
    for i in range(q + 1, len(text)):
        ch = text[i]
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and ch == "?":
            nested += 1
        elif depth == 0 and ch == ":":
            if nested == 0:
                colon = i
                break
            nested -= 1
    if colon < 0:
        raise EvaluationError(f"Image.parseExpression: '?' without ':' in '{text}'.")
    return f"_if({_ternary(text[:q])}, {_ternary(text[q + 1 : colon])}, {_ternary(text[colon + 1 :])})"


# ------------------------------------------------------------------------------------ collections


def _window_bounds(lon: np.ndarray, lat: np.ndarray) -> Any:
    if lon.size == 0:
        return None
    return shapely.box(float(np.min(lon)), float(np.min(lat)), float(np.max(lon)), float(np.max(lat)))


def _stack(collection: ImageCollection, band: str, lon: np.ndarray, lat: np.ndarray) -> np.ma.MaskedArray:
    # the collection's own bounds where it has them (resolved once for every band and window),
    # else the window's
    bounds = collection.bounds()
    images = collection.resolve(bounds if bounds is not None else _window_bounds(lon, lat))
    layers = []
    for img in images:
        values = img.sample_masked(lon, lat)
        if band not in values:
            raise EvaluationError(f"ImageCollection.reduce: band '{band}' is missing in an image of the collection.")
        layers.append(values[band])
    if not layers:
        return np.ma.masked_all((0, *lon.shape))
    return np.ma.stack(layers)


def _first_bands(collection: ImageCollection) -> list[Band]:
    """The bands of the collection's images (EE requires them equal), from its prototype."""
    image = collection.prototype()
    return [] if image is None else list(as_image(image).bands)


def _as_collection(value: Any, fn: str) -> ImageCollection:
    if isinstance(value, ImageCollection):
        return value
    if isinstance(value, list):
        return ImageCollection(images=[as_image(v, fn) for v in value])
    raise EvaluationError(f"{fn}: expected an ImageCollection, got {type(value).__name__}.")


def reduce_collection(collection: Any, reducer: Any, parallelScale: Any = None, *, keep_names: bool = False) -> Image:
    coll = _as_collection(collection, "ImageCollection.reduce")
    red = reducer if isinstance(reducer, Reducer) else None
    if red is None:
        raise EvaluationError("ImageCollection.reduce: expected a Reducer.")
    bands = _first_bands(coll)
    out: list[Band] = []
    for band in bands:
        fn = memo(_reduced_stack(coll, band.name, red))
        for k, output in enumerate(red.outputs):
            name = band.name if keep_names else f"{band.name}_{output}"
            out.append(Band(name, _pick(fn, k), "float64"))
    return Image(tuple(out))


def _reduced_stack(coll: ImageCollection, band: str, red: Reducer) -> Callable[[np.ndarray, np.ndarray], Any]:
    # a masked array's astype is one too (numpy's stubs say ndarray)
    return lambda lon, lat: red.fn(cast(np.ma.MaskedArray, _stack(coll, band, lon, lat).astype(float)))


def _reduce_named(reducer_name: str) -> Callable[..., Image]:
    from gee_emulator.functions_pure import REDUCERS

    def apply(collection: Any) -> Image:
        return reduce_collection(collection, REDUCERS[reducer_name](), keep_names=True)

    return apply


def mosaic(collection: Any) -> Image:
    """The last valid value of each pixel (later images on top)."""
    coll = _as_collection(collection, "ImageCollection.mosaic")
    from gee_emulator.functions_pure import first_valid

    out = []
    for band in _first_bands(coll):
        fn = (lambda name: lambda lon, lat: first_valid(_stack(coll, name, lon, lat)[::-1]))(band.name)
        out.append(Band(band.name, memo(fn), band.dtype))
    return Image(tuple(out))


def quality_mosaic(collection: Any, qualityBand: Any) -> Image:
    """Each pixel from the image whose ``qualityBand`` is highest there."""
    coll = _as_collection(collection, "ImageCollection.qualityMosaic")
    bands = _first_bands(coll)
    if str(qualityBand) not in [b.name for b in bands]:
        raise EvaluationError(f"ImageCollection.qualityMosaic: Band '{qualityBand}' not found.")

    def pick(lon: np.ndarray, lat: np.ndarray) -> Any:
        q = _stack(coll, str(qualityBand), lon, lat).astype(float)
        return np.ma.argmax(np.ma.filled(q, -np.inf), axis=0), np.ma.getmaskarray(q).all(axis=0)

    chosen = memo(pick)
    out = []
    for band in bands:

        def fn(lon: np.ndarray, lat: np.ndarray, name: str = band.name) -> Any:
            index, none = chosen(lon, lat)
            stack = _stack(coll, name, lon, lat)
            values = np.take_along_axis(np.ma.getdata(stack), index[None, ...], axis=0)[0]
            masked = np.take_along_axis(np.ma.getmaskarray(stack), index[None, ...], axis=0)[0]
            return np.ma.masked_array(values, mask=masked | none)

        out.append(Band(band.name, memo(fn), band.dtype))
    return Image(tuple(out))


def from_images(images: Any) -> ImageCollection:
    return ImageCollection(images=[as_image(i, "ImageCollection.fromImages") for i in images])


def to_bands(collection: Any) -> Image:
    coll = _as_collection(collection, "ImageCollection.toBands")
    bands = []
    for i, img in enumerate(coll.resolve(coll.bounds())):
        index = img.props.get("system:index", str(i))
        bands += [replace(b, name=f"{index}_{b.name}") for b in img.bands]
    return Image(tuple(bands))


# ------------------------------------------------------------------------------------ terrain


def slope(input: Any) -> Image:
    """Degrees, from the first band's elevation (metres) by central differences over ~30 m."""
    img = as_image(input, "Terrain.slope")
    elevation = img.bands[0].fn
    step = 30.0 / METRES_PER_DEGREE

    def fn(lon: np.ndarray, lat: np.ndarray) -> Any:
        dx = (np.ma.asarray(elevation(lon + step, lat)) - np.ma.asarray(elevation(lon - step, lat))) / (
            60.0 * np.cos(np.radians(lat))
        )
        dy = (np.ma.asarray(elevation(lon, lat + step)) - np.ma.asarray(elevation(lon, lat - step))) / 60.0
        return np.degrees(np.arctan(np.hypot(dx, dy)))

    return Image((Band("slope", memo(fn), "float32"),), clip=img.clip)


def aspect(input: Any) -> Image:
    img = as_image(input, "Terrain.aspect")
    elevation = img.bands[0].fn
    step = 30.0 / METRES_PER_DEGREE

    def fn(lon: np.ndarray, lat: np.ndarray) -> Any:
        dx = np.ma.asarray(elevation(lon + step, lat)) - np.ma.asarray(elevation(lon - step, lat))
        dy = np.ma.asarray(elevation(lon, lat + step)) - np.ma.asarray(elevation(lon, lat - step))
        return (np.degrees(np.arctan2(-dx, -dy)) + 360) % 360

    return Image((Band("aspect", memo(fn), "float32"),), clip=img.clip)


# ------------------------------------------------------------------------------------ sampling


def _points_in(geom: Any, scale: float, limit: int = 200_000) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres (on the ``scale`` lattice in EPSG:4326) inside a geometry; a point or a
    geometry smaller than a pixel gives its representative point."""
    if geom.geom_type in ("Point", "MultiPoint") or geom.area == 0:
        p = geom.representative_point()
        return np.array([p.x]), np.array([p.y])
    step = scale / METRES_PER_DEGREE
    minx, miny, maxx, maxy = geom.bounds
    xs = (np.floor(minx / step) + 0.5 + np.arange(int(np.ceil((maxx - minx) / step)) + 1)) * step
    ys = (np.floor(miny / step) + 0.5 + np.arange(int(np.ceil((maxy - miny) / step)) + 1)) * step
    if xs.size * ys.size > limit:
        raise EvaluationError(
            f"Too many pixels in the region. Found {xs.size * ys.size}, but maxPixels allows only {limit}."
        )
    x, y = np.meshgrid(xs, ys)
    inside = shapely.contains_xy(geom, x, y)
    if not inside.any():
        p = geom.representative_point()
        return np.array([p.x]), np.array([p.y])
    return x[inside], y[inside]


def _reduce_at(img: Image, red: Reducer, lon: np.ndarray, lat: np.ndarray, *, per_feature: bool) -> dict[str, Any]:
    """EE's output names: ``reduceRegions`` names a single band's outputs by the reducer's output
    names; otherwise (and always in ``reduceRegion``) a single-output reducer's value is named by
    the band, several outputs by ``<band>_<output>``."""
    values = img.sample_masked(lon, lat)
    out: dict[str, Any] = {}
    single_band = per_feature and len(img.bands) == 1
    for band in img.bands:
        data = cast(np.ma.MaskedArray, values[band.name].astype(float).reshape(-1, 1))
        results = red.fn(data)
        for output, result in zip(red.outputs, results, strict=True):
            value = np.ma.asarray(result).reshape(-1)[0]
            value = None if value is np.ma.masked else float(value)
            if len(red.outputs) == 1:
                key = output if single_band else band.name
            else:
                key = output if single_band else f"{band.name}_{output}"
            out[key] = value
    return out


def reduce_regions(
    image: Any,
    collection: Any,
    reducer: Any,
    scale: Any = None,
    crs: Any = None,
    crsTransform: Any = None,
    tileScale: Any = None,
    maxPixelsPerRegion: Any = None,
) -> FeatureCollection:
    img = as_image(image, "Image.reduceRegions")
    if not isinstance(reducer, Reducer):
        raise EvaluationError("Image.reduceRegions: expected a Reducer.")
    if not isinstance(collection, FeatureCollection):
        raise EvaluationError("Image.reduceRegions: expected a FeatureCollection.")
    pixel = float(scale or img.scale or 1000.0)
    out = []
    for f in collection.features:
        if f.geometry is None:
            continue
        lon, lat = _points_in(f.geometry.shape, pixel)
        out.append(Feature(f.geometry, {**f.properties, **_reduce_at(img, reducer, lon, lat, per_feature=True)}))
    return FeatureCollection(out)


def reduce_region(
    image: Any,
    reducer: Any,
    geometry: Any = None,
    scale: Any = None,
    crs: Any = None,
    crsTransform: Any = None,
    bestEffort: Any = None,
    maxPixels: Any = None,
    tileScale: Any = None,
) -> dict[str, Any]:
    img = as_image(image, "Image.reduceRegion")
    if not isinstance(reducer, Reducer):
        raise EvaluationError("Image.reduceRegion: expected a Reducer.")
    if geometry is None:
        raise EvaluationError("Image.reduceRegion: Parameter 'geometry' is required for unbounded images.")
    lon, lat = _points_in(
        as_geometry(geometry, "Image.reduceRegion").shape,
        float(scale or img.scale or 1000.0),
        int(maxPixels or 10_000_000),
    )
    return _reduce_at(img, reducer, lon, lat, per_feature=False)


def sample(
    image: Any,
    region: Any = None,
    scale: Any = None,
    projection: Any = None,
    factor: Any = None,
    numPixels: Any = None,
    seed: Any = 0,
    dropNulls: Any = True,
    tileScale: Any = None,
    geometries: Any = False,
) -> FeatureCollection:
    img = as_image(image, "Image.sample")
    if region is None:
        raise EvaluationError("Image.sample: a region is required.")
    lon, lat = _points_in(as_geometry(region, "Image.sample").shape, float(scale or img.scale or 1000.0))
    order = np.random.default_rng(int(seed or 0)).permutation(lon.size)
    if numPixels is not None:
        order = order[: int(numPixels)]
    elif factor is not None:
        order = order[: round(lon.size * float(factor))]
    lon, lat = lon[np.sort(order)], lat[np.sort(order)]
    values = img.sample_masked(lon, lat)
    out = []
    for i in range(lon.size):
        props = {}
        for name, data in values.items():
            props[name] = None if np.ma.getmaskarray(data)[i] else data.data[i].item()
        if dropNulls is not False and any(v is None for v in props.values()):
            continue
        out.append(Feature(Geometry(shapely.Point(lon[i], lat[i])) if geometries else None, props))
    return FeatureCollection(out)


def image_get(image: Any, property: Any) -> Any:
    return properties_of(image).get(property)


def image_geometry(feature: Any, maxError: Any = None, proj: Any = None, geodesics: Any = None) -> Geometry:
    """The footprint of a scene, the clip of a clipped image, else the whole world (unbounded)."""
    img = as_image(feature, "Image.geometry")
    shape = img.footprint if img.footprint is not None else img.clip
    return Geometry(shape if shape is not None else shapely.box(-180, -90, 180, 90))


# ------------------------------------------------------------------------------------ grids and sampling


def _pixel_lon_lat() -> Image:
    return Image(
        (
            Band("longitude", lambda lon, lat: lon, "float64"),
            Band("latitude", lambda lon, lat: lat, "float64"),
        )
    )


def _clip_to_bounds_and_scale(
    input: Any,
    geometry: Any = None,
    width: Any = None,
    height: Any = None,
    maxDimension: Any = None,
    scale: Any = None,
) -> Image:
    img = as_image(input)
    region = as_geometry(geometry).shape if geometry is not None else img.region
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
    img = as_image(image)
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
    img = as_image(image)
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
    img, coll = as_image(image), _feature_collection(collection)
    points = [f for f in coll.features if f.geometry is not None]
    if not points:
        return FeatureCollection([])
    centroids = [cast(Geometry, f.geometry).shape.representative_point() for f in points]
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


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "Image.pixelLonLat": _pixel_lon_lat,
    "Image.clipToBoundsAndScale": _clip_to_bounds_and_scale,
    "Image.reproject": _reproject,
    "Image.setDefaultProjection": _set_default_projection,
    "Image.sampleRegions": _sample_regions,
    "Projection": _projection,
    **{f"Image.{n}": _binary(n) for n in BINARY},
    **{f"Image.{n}": _unary(n) for n in UNARY},
    **{f"Image.{n}": _cast(t) for n, t in CASTS.items()},
    "Image.constant": lambda value: constant(value),
    "Image.select": select,
    "Image.rename": rename,
    "Image.addBands": add_bands,
    "Image.updateMask": update_mask,
    "Image.mask": mask,
    "Image.selfMask": self_mask,
    "Image.unmask": unmask,
    "Image.where": where,
    "Image.normalizedDifference": normalized_difference,
    "Image.unitScale": unit_scale,
    "Image.bandNames": band_names,
    "Image.date": image_date,
    "Image.clip": clip,
    "Image.geometry": image_geometry,
    "Image.parseExpression": parse_expression,
    "Image.reduceRegions": reduce_regions,
    "Image.reduceRegion": reduce_region,
    "Image.sample": sample,
    "Image.reduce": lambda image, reducer: _reduce_bands(image, reducer),
    "ImageCollection.fromImages": from_images,
    "ImageCollection.reduce": reduce_collection,
    "ImageCollection.mosaic": mosaic,
    "ImageCollection.qualityMosaic": quality_mosaic,
    "ImageCollection.merge": lambda collection1, collection2: ImageCollection(
        parts=[
            _as_collection(collection1, "ImageCollection.merge"),
            _as_collection(collection2, "ImageCollection.merge"),
        ]
    ),
    "ImageCollection.toBands": to_bands,
    **{
        f"reduce.{n}": _reduce_named(f"Reducer.{n}")
        for n in ("mean", "median", "min", "max", "sum", "count", "product", "mode")
    },
    "Terrain.slope": slope,
    "Terrain.aspect": aspect,
}


def _reduce_bands(image: Any, reducer: Any) -> Image:
    """``Image.reduce``: the reducer across the bands of each pixel."""
    img = as_image(image, "Image.reduce")
    red = reducer if isinstance(reducer, Reducer) else None
    if red is None:
        raise EvaluationError("Image.reduce: expected a Reducer.")

    def stacked(lon: np.ndarray, lat: np.ndarray) -> Any:
        values = img.sample_masked(lon, lat)
        return red.fn(np.ma.stack([values[b.name].astype(float) for b in img.bands]))

    fn = memo(stacked)
    return Image(
        tuple(Band(o, _pick(fn, k), "float64") for k, o in enumerate(red.outputs)),
        clip=img.clip,
    )
