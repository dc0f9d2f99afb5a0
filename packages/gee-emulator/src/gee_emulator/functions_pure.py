"""EE's pure families, evaluated exactly: Number, String, List, Dictionary, Date and DateRange,
Geometry, Feature and collections (filter, map, aggregates, sort, limit), Filter and Reducer.

Argument names are those of EE's algorithm list (the client sends them by name).
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import shapely
from pyproj import Geod, Transformer
from shapely.geometry import shape

from gee_emulator.values import (
    Closure,
    DateRange,
    EvaluationError,
    Feature,
    FeatureCollection,
    Filter,
    Geometry,
    Image,
    ImageCollection,
    Reducer,
)

_GEOD = Geod(ellps="WGS84")
_UTC = dt.UTC

# ------------------------------------------------------------------------------------ numbers

#: element-wise maths shared by Number.* and Image.* (numpy ufuncs work on scalars and arrays)
BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "add": np.add,
    "subtract": np.subtract,
    "multiply": np.multiply,
    # EE: "Divides the first value by the second, returning 0 for division by 0"
    "divide": lambda a, b: np.divide(a, np.where(np.equal(b, 0), 1, b)) * np.not_equal(b, 0),
    "max": np.maximum,
    "min": np.minimum,
    "mod": np.fmod,
    "pow": np.power,
    "atan2": np.arctan2,
    "hypot": np.hypot,
    "and": lambda a, b: np.logical_and(a, b).astype(np.int32),
    "or": lambda a, b: np.logical_or(a, b).astype(np.int32),
    "lt": lambda a, b: np.less(a, b).astype(np.int32),
    "lte": lambda a, b: np.less_equal(a, b).astype(np.int32),
    "gt": lambda a, b: np.greater(a, b).astype(np.int32),
    "gte": lambda a, b: np.greater_equal(a, b).astype(np.int32),
    "eq": lambda a, b: np.equal(a, b).astype(np.int32),
    "neq": lambda a, b: np.not_equal(a, b).astype(np.int32),
    "first": lambda a, b: a,
    "bitwiseAnd": lambda a, b: np.bitwise_and(np.asarray(a).astype(np.int64), np.asarray(b).astype(np.int64)),
    "bitwiseOr": lambda a, b: np.bitwise_or(np.asarray(a).astype(np.int64), np.asarray(b).astype(np.int64)),
    "bitwiseXor": lambda a, b: np.bitwise_xor(np.asarray(a).astype(np.int64), np.asarray(b).astype(np.int64)),
    "leftShift": lambda a, b: np.left_shift(np.asarray(a).astype(np.int64), np.asarray(b).astype(np.int64)),
    "rightShift": lambda a, b: np.right_shift(np.asarray(a).astype(np.int64), np.asarray(b).astype(np.int64)),
}
BINARY["firstNonZero"] = BINARY["first_nonzero"] = lambda a, b: np.where(np.not_equal(a, 0), a, b)
for _snake, _camel in (
    ("bitwise_and", "bitwiseAnd"),
    ("bitwise_or", "bitwiseOr"),
    ("bitwise_xor", "bitwiseXor"),
    ("left_shift", "leftShift"),
    ("right_shift", "rightShift"),
):
    BINARY[_snake] = BINARY[_camel]

UNARY: dict[str, Callable[[Any], Any]] = {
    **{
        n: getattr(np, n)
        for n in (
            "sin",
            "cos",
            "tan",
            "sinh",
            "cosh",
            "tanh",
            "sqrt",
            "log",
            "log10",
            "exp",
            "abs",
            "floor",
            "ceil",
            "cbrt",
        )
    },
    "asin": np.arcsin,
    "acos": np.arccos,
    "atan": np.arctan,
    "round": lambda v: np.floor(np.add(v, 0.5)),  # EE rounds half up
    "signum": np.sign,
    "not": lambda v: np.logical_not(v).astype(np.int32),
    "bitwiseNot": lambda v: np.invert(np.asarray(v).astype(np.int64)),
    "bitCount": lambda v: np.vectorize(lambda x: bin(int(x) & 0xFFFFFFFFFFFFFFFF).count("1"))(v),
}
UNARY["bitwise_not"] = UNARY["bitwiseNot"]
#: casts: name -> numpy dtype
CASTS = {
    "uint8": "uint8",
    "toUint8": "uint8",
    "byte": "uint8",
    "toByte": "uint8",
    "int8": "int8",
    "toInt8": "int8",
    "uint16": "uint16",
    "toUint16": "uint16",
    "int16": "int16",
    "toInt16": "int16",
    "short": "int16",
    "toShort": "int16",
    "int32": "int32",
    "toInt32": "int32",
    "int": "int32",
    "toInt": "int32",
    "uint32": "uint32",
    "toUint32": "uint32",
    "long": "int64",
    "toLong": "int64",
    "int64": "int64",
    "toInt64": "int64",
    "float": "float32",
    "toFloat": "float32",
    "double": "float64",
    "toDouble": "float64",
}


def _scalar(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray) and v.ndim == 0:
        return v.item()
    return v


def _number(v: Any, fn: str) -> float | int:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (int, float, np.number)):
        return _scalar(v)
    raise EvaluationError(f"{fn}: expected a number, got {type(v).__name__} {v!r}.")


def _number_binary(name: str) -> Callable[..., Any]:
    op = BINARY[name]

    def apply(left: Any, right: Any) -> Any:
        a, b = _number(left, f"Number.{name}"), _number(right, f"Number.{name}")
        out = _scalar(op(a, b))
        if name in ("add", "subtract", "multiply", "max", "min", "mod") and isinstance(a, int) and isinstance(b, int):
            return int(out)
        return out

    return apply


def _number_unary(name: str) -> Callable[..., Any]:
    op = UNARY[name]

    def apply(input: Any) -> Any:
        out = _scalar(op(_number(input, f"Number.{name}")))
        return int(out) if name in ("floor", "ceil", "round", "signum") and float(out).is_integer() else out

    return apply


def _number_cast(dtype: str) -> Callable[..., Any]:
    def apply(input: Any) -> Any:
        v = _number(input, "Number cast")
        return float(v) if dtype.startswith("float") else int(np.asarray(v).astype(dtype))

    return apply


def _number_clamp(number: Any, min: Any, max: Any) -> Any:
    return _scalar(np.clip(_number(number, "Number.clamp"), min, max))


def _number_unit_scale(number: Any, min: Any, max: Any) -> float:
    return (_number(number, "Number.unitScale") - min) / (max - min)


def _number_parse(input: Any, radix: Any = 10) -> Any:
    text = str(input).strip()
    try:
        return int(text, int(radix or 10))
    except ValueError:
        try:
            return float(text)
        except ValueError as exc:
            raise EvaluationError(f"Number.parse: Unable to parse '{input}'.") from exc


def _number_format(number: Any, pattern: Any = None) -> str:
    if not pattern:
        return str(number)
    try:
        return str(pattern) % number
    except (TypeError, ValueError) as exc:
        raise EvaluationError(f"Number.format: invalid pattern {pattern!r}.") from exc


# ------------------------------------------------------------------------------------ strings


def _js_flags(flags: Any) -> int:
    out = 0
    for f in str(flags or ""):
        out |= {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL}.get(f, 0)
    return out


def _string_replace(input: Any, regex: Any, replacement: Any, flags: Any = None) -> str:
    count = 0 if "g" in str(flags or "") else 1
    repl = re.sub(r"\$(\d)", r"\\\1", str(replacement))
    return re.sub(str(regex), repl, str(input), count=count, flags=_js_flags(flags))


def _to_string(input: Any) -> str:
    if isinstance(input, str):
        return input
    if isinstance(input, bool):
        return "true" if input else "false"
    if isinstance(input, float) and input.is_integer():
        return str(int(input)) if abs(input) < 1e21 else str(input)
    if isinstance(input, (int, float)):
        return str(input)
    return json.dumps(_plain_json(input))


def _plain_json(v: Any) -> Any:
    from gee_emulator.values import to_json

    return to_json(v)


STRING: dict[str, Callable[..., Any]] = {
    "String": _to_string,
    "String.cat": lambda string1, string2: str(string1) + str(string2),
    "String.compareTo": lambda string1, string2: (string1 > string2) - (string1 < string2),
    "String.decodeJSON": lambda string: json.loads(string),
    "String.encodeJSON": lambda object: json.dumps(_plain_json(object)),
    "String.equals": lambda reference, target: reference == target,
    "String.index": lambda target, pattern: str(target).find(str(pattern)),
    "String.rindex": lambda target, pattern: str(target).rfind(str(pattern)),
    "String.length": lambda string: len(str(string)),
    "String.match": lambda input, regex, flags=None: (
        re.findall(str(regex), str(input), _js_flags(flags))
        if "g" in str(flags or "")
        else ([m.group(0), *m.groups()] if (m := re.search(str(regex), str(input), _js_flags(flags))) else [])
    ),
    "String.replace": _string_replace,
    "String.slice": lambda string, start, end=None: str(string)[int(start) : None if end is None else int(end)],
    "String.split": lambda string, regex, flags=None: (
        list(str(string)) if regex == "" else re.split(str(regex), str(string), flags=_js_flags(flags))
    ),
    "String.toLowerCase": lambda string: str(string).lower(),
    "String.toUpperCase": lambda string: str(string).upper(),
    "String.trim": lambda string: str(string).strip(),
}

# ------------------------------------------------------------------------------------ lists and dictionaries


def _callable(fn: Any, what: str) -> Callable[..., Any]:
    if not callable(fn):
        raise EvaluationError(f"{what}: expected a function, got {type(fn).__name__}.")
    return fn


def _list_map(list: Any, baseAlgorithm: Any, dropNulls: Any = False) -> list[Any]:
    fn = _callable(baseAlgorithm, "List.map")
    out = [fn(x) for x in list]
    return [x for x in out if x is not None] if dropNulls else out


def _list_iterate(list: Any, function: Any, first: Any) -> Any:
    fn, acc = _callable(function, "List.iterate"), first
    for x in list:
        acc = fn(x, acc)
    return acc


def _sequence(start: Any, end: Any = None, step: Any = None, count: Any = None) -> list[Any]:
    if count is not None:
        step = 1 if step is None else step
        return [start + i * step for i in range(int(count))]
    step = 1 if step is None else step
    if step == 0:
        raise EvaluationError("List.sequence: step must not be 0.")
    out, v = [], start
    while (step > 0 and v <= end + 1e-12) or (step < 0 and v >= end - 1e-12):
        out.append(v)
        v = v + step
    return out


def _index(lst: list[Any], index: Any, fn: str) -> Any:
    i = int(index)
    try:
        return lst[i]
    except IndexError as exc:
        raise EvaluationError(f"{fn}: List index must be between {-len(lst)} and {len(lst) - 1}: {i}.") from exc


def _flatten_list(lst: list[Any]) -> list[Any]:
    out: list[Any] = []
    for x in lst:
        out.extend(_flatten_list(x) if isinstance(x, list) else [x])
    return out


def _list_sort(list: Any, keys: Any = None) -> list[Any]:
    if keys is None:
        return sorted(list, key=_sort_key)
    return [v for _, v in sorted(zip(keys, list, strict=True), key=lambda kv: _sort_key(kv[0]))]


def _sort_key(v: Any) -> tuple[int, Any]:
    if v is None:
        return (0, 0)
    if isinstance(v, (int, float)):
        return (1, v)
    return (2, str(v))


def _list_reduce(list: Any, reducer: Any) -> Any:
    red = _as_reducer(reducer, "List.reduce")
    data = np.ma.masked_invalid(np.asarray([float(x) for x in list], dtype=float).reshape(-1, 1))
    outs = [_scalar(o[0]) for o in red.fn(data)]
    return outs[0] if len(outs) == 1 else dict(zip(red.outputs, outs, strict=True))


LISTS: dict[str, Callable[..., Any]] = {
    "List.add": lambda list, element: [*list, element],
    "List.cat": lambda list, other: [*list, *other],
    "List.contains": lambda list, element: element in list,
    "List.containsAll": lambda list, other: all(x in list for x in other),
    "List.distinct": lambda list: [x for i, x in enumerate(list) if x not in list[:i]],
    "List.equals": lambda list, other: list == other,
    "List.filter": lambda list, filter: [x for x in list if _as_filter(filter, "List.filter")({"item": x})],
    "List.flatten": lambda list: _flatten_list(list),
    "List.frequency": lambda list, element: list.count(element),
    "List.get": lambda list, index: _index(list, index, "List.get"),
    "List.getNumber": lambda list, index: _index(list, index, "List.getNumber"),
    "List.getString": lambda list, index: _index(list, index, "List.getString"),
    "List.getGeometry": lambda list, index: _index(list, index, "List.getGeometry"),
    "List.indexOf": lambda list, element: list.index(element) if element in list else -1,
    "List.insert": lambda list, index, element: [*list[: int(index)], element, *list[int(index) :]],
    "List.iterate": _list_iterate,
    "List.join": lambda list, separator=", ": str(separator).join(_to_string(x) for x in list),
    "List.length": lambda list: len(list),
    "List.size": lambda list: len(list),
    "List.map": _list_map,
    "List.reduce": _list_reduce,
    "List.remove": lambda list, element: (
        (lambda i: list[:i] + list[i + 1 :])(list.index(element)) if element in list else list
    ),
    "List.removeAll": lambda list, other: [x for x in list if x not in other],
    "List.repeat": lambda value, count: [value] * int(count),
    "List.replace": lambda list, oldval, newval: (
        (lambda i: [*list[:i], newval, *list[i + 1 :]])(list.index(oldval)) if oldval in list else list
    ),
    "List.replaceAll": lambda list, oldval, newval: [newval if x == oldval else x for x in list],
    "List.reverse": lambda list: list[::-1],
    "List.rotate": lambda list, distance: (
        (list[-int(distance) % len(list) :] + list[: -int(distance) % len(list)]) if list else list
    ),
    "List.sequence": _sequence,
    "List.set": lambda list, index, element: [
        element if i == int(index) % len(list) else x for i, x in enumerate(list)
    ],
    "List.slice": lambda list, start, end=None, step=None: list[
        int(start) : None if end is None else int(end) : None if step is None else int(step)
    ],
    "List.sort": _list_sort,
    "List.splice": lambda list, start, count, other=None: [
        *list[: int(start)],
        *(other or []),
        *list[int(start) + int(count) :],
    ],
    "List.swap": lambda list, pos1, pos2: [
        list[int(pos2)] if i == int(pos1) else list[int(pos1)] if i == int(pos2) else x for i, x in enumerate(list)
    ],
    "List.unzip": lambda list: [list_ for list_ in map(builtins_list, zip(*list, strict=False))],
    "List.zip": lambda list, other: [[a, b] for a, b in zip(list, other, strict=False)],
}
builtins_list = list


def _dict_get(dictionary: Any, key: Any, defaultValue: Any = None) -> Any:
    if key in dictionary:
        return dictionary[key]
    if defaultValue is not None:
        return defaultValue
    raise EvaluationError(f"Dictionary.get: Dictionary does not contain key: {key}.")


def _dict_select(dictionary: Any, selectors: Any, ignoreMissing: Any = False) -> dict[str, Any]:
    out = {}
    for sel in selectors:
        hits = [k for k in dictionary if re.fullmatch(str(sel), k)]
        if not hits and not ignoreMissing:
            raise EvaluationError(f"Dictionary.select: Selector '{sel}' did not match any keys.")
        out.update({k: dictionary[k] for k in hits})
    return out


DICTIONARIES: dict[str, Callable[..., Any]] = {
    "Dictionary": lambda input=None: dict(input or {}) if not isinstance(input, Feature) else dict(input.properties),
    "Dictionary.combine": lambda first, second, overwrite=True: (
        {**second, **first} if not overwrite else {**first, **second}
    ),
    "Dictionary.contains": lambda dictionary, key: key in dictionary,
    "Dictionary.fromLists": lambda keys, values: dict(zip(keys, values, strict=True)),
    "Dictionary.get": _dict_get,
    "Dictionary.getNumber": _dict_get,
    "Dictionary.getString": _dict_get,
    "Dictionary.getGeometry": _dict_get,
    "Dictionary.keys": lambda dictionary: sorted(dictionary),
    "Dictionary.values": lambda dictionary, keys=None: [dictionary[k] for k in (keys or sorted(dictionary))],
    "Dictionary.map": lambda dictionary, baseAlgorithm: {
        k: _callable(baseAlgorithm, "Dictionary.map")(k, v) for k, v in dictionary.items()
    },
    "Dictionary.remove": lambda dictionary, selectors, ignoreMissing=False: {
        k: v for k, v in dictionary.items() if k not in selectors
    },
    "Dictionary.rename": lambda dictionary, to, overwrite=False, **kw: {
        dict(zip(kw["from"], to, strict=True)).get(k, k): v for k, v in dictionary.items()
    },
    "Dictionary.select": _dict_select,
    "Dictionary.set": lambda dictionary, key, value: {**dictionary, key: value},
    "Dictionary.size": lambda dictionary: len(dictionary),
}

# ------------------------------------------------------------------------------------ dates

_UNITS = ("year", "month", "week", "day", "hour", "minute", "second")


def as_date(value: Any, fn: str = "Date") -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, bool):
        raise EvaluationError(f"{fn}: expected a date, got {value!r}.")
    if isinstance(value, (int, float, np.number)):
        return dt.datetime(1970, 1, 1, tzinfo=_UTC) + dt.timedelta(milliseconds=float(value))
    if isinstance(value, dict) and value.get("type") == "Date":
        return as_date(value["value"], fn)
    text = str(value).strip()
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = dt.datetime.strptime(text, "%Y-%m")
        except ValueError as exc:
            raise EvaluationError(f"{fn}: Unable to parse date '{value}'.") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=_UTC)


def _millis(d: dt.datetime) -> int:
    return round((d - dt.datetime(1970, 1, 1, tzinfo=_UTC)).total_seconds() * 1000)


def _check_unit(unit: Any, fn: str) -> str:
    u = str(unit).lower().rstrip("s") if str(unit).lower() not in ("s",) else "second"
    if u not in _UNITS:
        raise EvaluationError(f"{fn}: Unknown unit '{unit}'. Use one of {', '.join(_UNITS)}.")
    return u


def advance(date: dt.datetime, delta: float, unit: str) -> dt.datetime:
    if unit in ("year", "month"):
        months = delta * (12 if unit == "year" else 1)
        whole = math.floor(months)
        y, m = divmod(date.month - 1 + whole, 12)
        year, month = date.year + y, m + 1
        day = min(date.day, calendar.monthrange(year, month)[1])
        out = date.replace(year=year, month=month, day=day)
        frac = months - whole
        if frac:
            out += (advance(out, 1, "month") - out) * frac
        return out
    seconds = {"week": 604800, "day": 86400, "hour": 3600, "minute": 60, "second": 1}[unit]
    return date + dt.timedelta(seconds=delta * seconds)


def _date_get(date: Any, unit: Any, timeZone: Any = None) -> int:
    d, u = as_date(date, "Date.get"), _check_unit(unit, "Date.get")
    if u == "week":
        return int(d.strftime("%U"))
    return getattr(d, u)


def _date_difference(date: Any, start: Any, unit: Any) -> float:
    d, s, u = as_date(date), as_date(start), _check_unit(unit, "Date.difference")
    if u in ("year", "month"):
        months: float = (d.year - s.year) * 12 + (d.month - s.month)
        base = advance(s, months, "month")
        span = advance(base, 1, "month") - base
        months += (d - base) / span
        return months / 12 if u == "year" else months
    return (d - s).total_seconds() / {"week": 604800, "day": 86400, "hour": 3600, "minute": 60, "second": 1}[u]


_JODA = [
    ("YYYY", "%Y"),
    ("yyyy", "%Y"),
    ("MM", "%m"),
    ("dd", "%d"),
    ("DDD", "%j"),
    ("HH", "%H"),
    ("mm", "%M"),
    ("ss", "%S"),
    ("YY", "%y"),
    ("yy", "%y"),
    ("MMM", "%b"),
]


def _date_format(date: Any, format: Any = None, timeZone: Any = None) -> str:
    d = as_date(date, "Date.format")
    if not format:
        return d.strftime("%Y-%m-%dT%H:%M:%S")
    out, i, pattern = "", 0, str(format)
    tokens = sorted(_JODA, key=lambda t: -len(t[0]))
    while i < len(pattern):
        for token, code in tokens:
            if pattern.startswith(token, i):
                out += d.strftime(code)
                i += len(token)
                break
        else:
            out += pattern[i]
            i += 1
    return out


def _date_range(start: Any, end: Any = None, timeZone: Any = None) -> DateRange:
    s = as_date(start, "DateRange")
    e = as_date(end, "DateRange") if end is not None else s + dt.timedelta(milliseconds=1)
    return DateRange(s, e)


def as_range(value: Any, fn: str) -> DateRange:
    if isinstance(value, DateRange):
        return value
    if isinstance(value, list) and len(value) == 2:
        return _date_range(*value)
    if isinstance(value, dict) and value.get("type") == "DateRange":
        return _date_range(*value["dates"])
    raise EvaluationError(f"{fn}: expected a DateRange, got {value!r}.")


_FAR = dt.datetime(9999, 1, 1, tzinfo=_UTC)
_EARLY = dt.datetime(1, 1, 1, tzinfo=_UTC)

DATES: dict[str, Callable[..., Any]] = {
    "Date": lambda value, timeZone=None: as_date(value),
    "Date.advance": lambda date, delta, unit, timeZone=None: advance(
        as_date(date), float(delta), _check_unit(unit, "Date.advance")
    ),
    "Date.difference": _date_difference,
    "Date.format": _date_format,
    "Date.fromYMD": lambda year, month, day, timeZone=None: dt.datetime(int(year), int(month), int(day), tzinfo=_UTC),
    "Date.get": _date_get,
    "Date.getFraction": lambda date, unit, timeZone=None: (
        lambda d, u: (d - _truncate(d, u)) / (advance(_truncate(d, u), 1, u) - _truncate(d, u))
    )(as_date(date), _check_unit(unit, "Date.getFraction")),
    "Date.getRange": lambda date, unit, timeZone=None: (
        lambda d, u: DateRange(_truncate(d, u), advance(_truncate(d, u), 1, u))
    )(as_date(date), _check_unit(unit, "Date.getRange")),
    "Date.millis": lambda date: _millis(as_date(date)),
    "Date.parse": lambda format, date, timeZone=None: as_date(
        dt.datetime.strptime(str(date), _date_format_to_strptime(str(format))).replace(tzinfo=_UTC)
    ),
    "Date.unitRatio": lambda numerator, denominator: _unit_seconds(numerator) / _unit_seconds(denominator),
    "DateRange": _date_range,
    "DateRange.contains": lambda dateRange, other: (
        (lambda r, o: r.start <= o.start and o.end <= r.end)(as_range(dateRange, "DateRange.contains"), other)
        if isinstance(other, DateRange)
        else as_range(dateRange, "DateRange.contains").contains(as_date(other))
    ),
    "DateRange.start": lambda dateRange: as_range(dateRange, "DateRange.start").start,
    "DateRange.end": lambda dateRange: as_range(dateRange, "DateRange.end").end,
    "DateRange.isEmpty": lambda dateRange: (lambda r: r.end <= r.start)(as_range(dateRange, "DateRange.isEmpty")),
    "DateRange.isUnbounded": lambda dateRange: (lambda r: r.start <= _EARLY or r.end >= _FAR)(
        as_range(dateRange, "DateRange.isUnbounded")
    ),
    "DateRange.unbounded": lambda: DateRange(_EARLY, _FAR),
    "DateRange.intersects": lambda dateRange, other: (lambda a, b: a.start < b.end and b.start < a.end)(
        as_range(dateRange, "x"), as_range(other, "x")
    ),
    "DateRange.intersection": lambda dateRange, other: (
        lambda a, b: DateRange(max(a.start, b.start), min(a.end, b.end))
    )(as_range(dateRange, "x"), as_range(other, "x")),
    "DateRange.union": lambda dateRange, other: (lambda a, b: DateRange(min(a.start, b.start), max(a.end, b.end)))(
        as_range(dateRange, "x"), as_range(other, "x")
    ),
}


def _truncate(d: dt.datetime, unit: str) -> dt.datetime:
    if unit == "year":
        return d.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    if unit == "month":
        return d.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if unit == "week":
        day = d.replace(hour=0, minute=0, second=0, microsecond=0)
        return day - dt.timedelta(days=(day.weekday() + 1) % 7)
    fields = ["day", "hour", "minute", "second"]
    keep = fields.index(unit)
    zero: dict[str, Any] = {"hour": 0, "minute": 0, "second": 0, "microsecond": 0}
    return d.replace(**{k: v for k, v in zero.items() if k in (["hour", "minute", "second", "microsecond"][keep:])})


def _unit_seconds(unit: Any) -> float:
    u = _check_unit(unit, "Date.unitRatio")
    return {
        "year": 365.25 * 86400,
        "month": 365.25 * 86400 / 12,
        "week": 604800,
        "day": 86400,
        "hour": 3600,
        "minute": 60,
        "second": 1,
    }[u]


def _date_format_to_strptime(pattern: str) -> str:
    out = pattern
    for token, code in sorted(_JODA, key=lambda t: -len(t[0])):
        out = out.replace(token, code)
    return out


# ------------------------------------------------------------------------------------ geometry


def as_geometry(value: Any, fn: str = "Geometry") -> Geometry:
    if isinstance(value, Geometry):
        return value
    if isinstance(value, Feature) and value.geometry is not None:
        return value.geometry
    if isinstance(value, Image) and value.footprint is not None:
        return Geometry(value.footprint)
    if isinstance(value, FeatureCollection):
        return Geometry(shapely.union_all([f.geometry.shape for f in value.features if f.geometry]))
    if isinstance(value, dict) and "type" in value:
        from shapely.geometry import shape

        return Geometry(shape(value))
    raise EvaluationError(f"{fn}: expected a Geometry, got {type(value).__name__}.")


def geodesic_area(geom: Any) -> float:
    area = 0.0
    for part in getattr(geom, "geoms", [geom]):
        if part.geom_type in ("Polygon", "MultiPolygon"):
            area += abs(_GEOD.geometry_area_perimeter(part)[0])
    return area


def _buffer(geometry: Any, distance: Any, maxError: Any = None, proj: Any = None) -> Geometry:
    """A buffer of ``distance`` metres, computed in a local azimuthal equidistant projection."""
    from pyproj import Transformer

    geom = as_geometry(geometry, "Geometry.buffer").shape
    c = geom.centroid
    local = f"+proj=aeqd +lat_0={c.y} +lon_0={c.x} +datum=WGS84 +units=m"
    fwd = Transformer.from_crs("EPSG:4326", local, always_xy=True)
    back = Transformer.from_crs(local, "EPSG:4326", always_xy=True)
    projected = shapely.transform(geom, lambda xy: np.column_stack(fwd.transform(xy[:, 0], xy[:, 1])))
    buffered = shapely.buffer(projected, float(distance))
    return Geometry(shapely.transform(buffered, lambda xy: np.column_stack(back.transform(xy[:, 0], xy[:, 1]))))


def _transform(geometry: Any, proj: Any = None, maxError: Any = None, geodesic: Any = None) -> Geometry:
    from pyproj import Transformer

    geom = as_geometry(geometry, "Geometry.transform")
    code = proj.get("crs") if isinstance(proj, dict) else proj
    if code in (None, "EPSG:4326"):
        return geom
    fwd = Transformer.from_crs("EPSG:4326", str(code), always_xy=True)
    return Geometry(shapely.transform(geom.shape, lambda xy: np.column_stack(fwd.transform(xy[:, 0], xy[:, 1]))))


GEOMETRY: dict[str, Callable[..., Any]] = {
    "Geometry.area": lambda geometry, maxError=None, proj=None: geodesic_area(as_geometry(geometry).shape),
    "Geometry.bounds": lambda geometry, maxError=None, proj=None: Geometry(
        shapely.box(*as_geometry(geometry).shape.bounds)
    ),
    "Geometry.buffer": _buffer,
    "Geometry.centroid": lambda geometry, maxError=None, proj=None: Geometry(as_geometry(geometry).shape.centroid),
    "Geometry.intersection": lambda left, right, maxError=None, proj=None: Geometry(
        shapely.intersection(as_geometry(left).shape, as_geometry(right).shape)
    ),
    "Geometry.union": lambda left, right, maxError=None, proj=None: Geometry(
        shapely.union(as_geometry(left).shape, as_geometry(right).shape)
    ),
    "Geometry.intersects": lambda left, right, maxError=None, proj=None: bool(
        shapely.intersects(as_geometry(left).shape, as_geometry(right).shape)
    ),
    "Geometry.contains": lambda left, right, maxError=None, proj=None: bool(
        shapely.contains(as_geometry(left).shape, as_geometry(right).shape)
    ),
    "Geometry.transform": _transform,
    "Geometry.coordinates": lambda geometry: as_geometry(geometry).to_geojson()["coordinates"],
    "Geometry.type": lambda geometry: as_geometry(geometry).shape.geom_type,
    "Geometry.perimeter": lambda geometry, maxError=None, proj=None: abs(
        _GEOD.geometry_area_perimeter(as_geometry(geometry).shape)[1]
    ),
    "Geometry.length": lambda geometry, maxError=None, proj=None: _GEOD.geometry_length(as_geometry(geometry).shape),
}

# ------------------------------------------------------------------------------------ elements and collections


def properties_of(element: Any) -> dict[str, Any]:
    if isinstance(element, Feature):
        return element.properties
    if isinstance(element, Image):
        return element.props
    if isinstance(element, dict):
        return element
    return {}


def _set(object: Any, key: Any = None, value: Any = None, properties: Any = None) -> Any:
    from dataclasses import replace

    updates = dict(properties or {})
    if key is not None:
        updates[key] = value
    if isinstance(object, Feature):
        return Feature(object.geometry, {**object.properties, **updates})
    if isinstance(object, Image):
        return replace(object, properties=tuple({**object.props, **updates}.items()))
    raise EvaluationError(f"Element.set: expected a Feature or an Image, got {type(object).__name__}.")


def _get(object: Any, property: Any) -> Any:
    props = properties_of(object)
    return props.get(property)


def _copy_properties(destination: Any = None, source: Any = None, properties: Any = None, exclude: Any = None) -> Any:
    src = properties_of(source)
    picked = {k: v for k, v in src.items() if (properties is None or k in properties) and k not in (exclude or [])}
    if properties is None:
        picked = {k: v for k, v in picked.items() if not k.startswith("system:")}
    return _set(destination, properties=picked)


def elements(collection: Any, fn: str) -> list[Any]:
    if isinstance(collection, FeatureCollection):
        return list(collection.features)
    if isinstance(collection, ImageCollection):
        return collection.resolve()
    if isinstance(collection, list):
        return list(collection)
    raise EvaluationError(f"{fn}: expected a collection, got {type(collection).__name__}.")


def like(collection: Any, items: list[Any]) -> Any:
    if isinstance(collection, ImageCollection):
        return ImageCollection(images=items)
    return FeatureCollection(items)


def _collection_filter(collection: Any, filter: Any) -> Any:
    f = _as_filter(filter, "Collection.filter")
    if isinstance(collection, ImageCollection):
        # image collections stay lazy: the filter (and its dates and bounds) go with them
        return collection.then("filter", f)
    return like(collection, [e for e in elements(collection, "Collection.filter") if f(e)])


def _collection_map(collection: Any, baseAlgorithm: Any, dropNulls: Any = False) -> Any:
    fn = _callable(baseAlgorithm, "Collection.map")
    if isinstance(collection, ImageCollection):
        return collection.then("map", fn)
    out = [fn(e) for e in elements(collection, "Collection.map")]
    # a FeatureCollection cannot hold nulls: EE drops them (dropNulls) or fails later on them
    return like(collection, [e for e in out if e is not None])


def _collection_iterate(collection: Any, function: Any, first: Any = None) -> Any:
    fn, acc = _callable(function, "Collection.iterate"), first
    for e in elements(collection, "Collection.iterate"):
        acc = fn(e, acc)
    return acc


def _limit(collection: Any, limit: Any = None, key: Any = None, ascending: Any = True) -> Any:
    items = elements(collection, "Collection.limit")
    if key:
        items.sort(key=lambda e: _sort_key(properties_of(e).get(key)), reverse=ascending is False)
    return like(collection, items[: int(limit)] if limit is not None else items)


def _first(collection: Any) -> Any:
    items = elements(collection, "Collection.first")
    return items[0] if items else None


def _to_list(collection: Any, count: Any, offset: Any = 0) -> list[Any]:
    items = elements(collection, "Collection.toList")
    return items[int(offset or 0) : int(offset or 0) + int(count)]


def _aggregate(op: Callable[[list[Any]], Any], name: str) -> Callable[..., Any]:
    def apply(collection: Any, property: Any) -> Any:
        values = [properties_of(e).get(property) for e in elements(collection, f"AggregateFeatureCollection.{name}")]
        values = [v for v in values if v is not None]
        return op(values)

    return apply


def _stats(values: list[Any]) -> dict[str, Any]:
    a = np.asarray(values, dtype=float)
    n = len(a)
    return {
        "max": float(a.max()) if n else None,
        "mean": float(a.mean()) if n else None,
        "min": float(a.min()) if n else None,
        "sample_sd": float(a.std(ddof=1)) if n > 1 else 0.0,
        "sample_var": float(a.var(ddof=1)) if n > 1 else 0.0,
        "sum": float(a.sum()),
        "sum_sq": float((a**2).sum()),
        "total_count": n,
        "total_sd": float(a.std()) if n else 0.0,
        "total_var": float(a.var()) if n else 0.0,
        "valid_count": n,
    }


def _reduce_columns(collection: Any, reducer: Any, selectors: Any, weightSelectors: Any = None) -> dict[str, Any]:
    red = _as_reducer(reducer, "Collection.reduceColumns")
    items = elements(collection, "Collection.reduceColumns")
    rows = [[properties_of(e).get(s) for s in selectors] for e in items]
    data = np.ma.masked_invalid(np.asarray([[np.nan if v is None else float(v) for v in r] for r in rows], dtype=float))
    if data.size == 0:
        data = np.ma.masked_all((0, len(selectors)))
    outs = red.fn(data)
    if len(selectors) == 1 or red.inputs == len(selectors):
        return {name: _scalar(o[0]) for name, o in zip(red.outputs, outs, strict=True)}
    return {
        f"{s}_{name}": _scalar(o[i]) for i, s in enumerate(selectors) for name, o in zip(red.outputs, outs, strict=True)
    }


def _distinct(collection: Any, properties: Any) -> Any:
    keys = [properties] if isinstance(properties, str) else list(properties)
    seen, out = set(), []
    for e in elements(collection, "Collection.distinct"):
        k = tuple(json.dumps(properties_of(e).get(p), sort_keys=True, default=str) for p in keys)
        if k not in seen:
            seen.add(k)
            out.append(e)
    return like(collection, out)


def _random_points(region: Any, points: Any = 1000, seed: Any = 0, maxError: Any = None) -> FeatureCollection:
    geom = as_geometry(region, "FeatureCollection.randomPoints").shape
    rng = np.random.default_rng(int(seed or 0))
    minx, miny, maxx, maxy = geom.bounds
    out: list[Feature] = []
    while len(out) < int(points):
        xs = rng.uniform(minx, maxx, 256)
        ys = rng.uniform(miny, maxy, 256)
        inside = shapely.contains_xy(geom, xs, ys)
        for x, y in zip(xs[inside], ys[inside], strict=True):
            if len(out) < int(points):
                out.append(Feature(Geometry(shapely.Point(x, y)), {}))
    return FeatureCollection(out)


def _feature_select(input: Any, propertySelectors: Any, newProperties: Any = None, retainGeometry: Any = True) -> Any:
    props = _dict_select(properties_of(input), propertySelectors)
    if newProperties:
        props = dict(zip(newProperties, props.values(), strict=True))
    return Feature(input.geometry if retainGeometry else None, props)


ELEMENTS: dict[str, Callable[..., Any]] = {
    "Element.set": _set,
    "Element.setMulti": lambda object, properties: _set(object, properties=properties),
    "Element.get": _get,
    "Element.getNumber": _get,
    "Element.getString": _get,
    "Element.propertyNames": lambda element: sorted(properties_of(element)),
    "Element.toDictionary": lambda element, properties=None: {
        k: v for k, v in properties_of(element).items() if properties is None or k in properties
    },
    "Element.copyProperties": _copy_properties,
    "Image.copyProperties": _copy_properties,
    "Element.geometry": lambda feature, maxError=None, proj=None, geodesics=None: as_geometry(feature),
    "Feature.geometry": lambda feature, maxError=None, proj=None, geodesics=None: as_geometry(feature),
    "Feature.setGeometry": lambda feature, geometry=None: Feature(
        as_geometry(geometry) if geometry is not None else None, dict(feature.properties)
    ),
    "Feature.id": lambda element: str(properties_of(element).get("system:index", "")),
    "Feature.area": lambda feature, maxError=None, proj=None: geodesic_area(as_geometry(feature).shape),
    "Feature.buffer": lambda feature, distance, maxError=None, proj=None: Feature(
        _buffer(feature, distance), dict(feature.properties)
    ),
    "Feature.centroid": lambda feature, maxError=None, proj=None: Feature(
        Geometry(as_geometry(feature).shape.centroid), dict(feature.properties)
    ),
    "Feature.bounds": lambda feature, maxError=None, proj=None: Feature(
        Geometry(shapely.box(*as_geometry(feature).shape.bounds)), dict(feature.properties)
    ),
    "Feature.select": _feature_select,
    "Collection.filter": _collection_filter,
    "Collection.map": _collection_map,
    "Collection.iterate": _collection_iterate,
    "Collection.limit": _limit,
    "Collection.first": _first,
    "Collection.size": lambda collection: len(elements(collection, "Collection.size")),
    "Collection.toList": _to_list,
    "Collection.merge": lambda collection1, collection2: like(
        collection1, elements(collection1, "Collection.merge") + elements(collection2, "Collection.merge")
    ),
    "Collection.reduceColumns": _reduce_columns,
    "Collection.distinct": _distinct,
    "Collection.geometry": lambda collection, maxError=None: as_geometry(
        FeatureCollection([e for e in elements(collection, "Collection.geometry") if isinstance(e, Feature)])
    ),
    "Collection.bounds": lambda collection, maxError=None, proj=None: Geometry(
        shapely.box(*as_geometry(FeatureCollection(elements(collection, "Collection.bounds"))).shape.bounds)
    ),
    "FeatureCollection.randomPoints": _random_points,
    "AggregateFeatureCollection.array": _aggregate(list, "array"),
    "AggregateFeatureCollection.first": _aggregate(lambda v: v[0] if v else None, "first"),
    "AggregateFeatureCollection.count": _aggregate(len, "count"),
    "AggregateFeatureCollection.count_distinct": _aggregate(
        lambda v: len({json.dumps(x) for x in v}), "count_distinct"
    ),
    "AggregateFeatureCollection.min": _aggregate(lambda v: min(v) if v else None, "min"),
    "AggregateFeatureCollection.max": _aggregate(lambda v: max(v) if v else None, "max"),
    "AggregateFeatureCollection.mean": _aggregate(lambda v: float(np.mean(v)) if v else None, "mean"),
    "AggregateFeatureCollection.sum": _aggregate(lambda v: float(np.sum(v)), "sum"),
    "AggregateFeatureCollection.product": _aggregate(lambda v: float(np.prod(v)), "product"),
    "AggregateFeatureCollection.sample_sd": _aggregate(
        lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, "sample_sd"
    ),
    "AggregateFeatureCollection.sample_var": _aggregate(
        lambda v: float(np.var(v, ddof=1)) if len(v) > 1 else 0.0, "sample_var"
    ),
    "AggregateFeatureCollection.total_sd": _aggregate(lambda v: float(np.std(v)) if v else 0.0, "total_sd"),
    "AggregateFeatureCollection.total_var": _aggregate(lambda v: float(np.var(v)) if v else 0.0, "total_var"),
    "AggregateFeatureCollection.stats": _aggregate(_stats, "stats"),
    "AggregateFeatureCollection.histogram": _aggregate(
        lambda v: {_to_string(k): v.count(k) for k in sorted(set(v), key=_sort_key)}, "histogram"
    ),
}

# ------------------------------------------------------------------------------------ filters


def _as_filter(value: Any, fn: str) -> Filter:
    if isinstance(value, Filter):
        return value
    raise EvaluationError(f"{fn}: expected a Filter, got {type(value).__name__}.")


def _operand(element: Any, field: Any, value: Any) -> Any:
    if field is None:
        return value
    if field in (".geo", ".all"):
        return as_geometry(element, "Filter")
    if isinstance(element, dict) and "item" in element and field == "item":
        return element["item"]
    return properties_of(element).get(field)


def _comparison(name: str, test: Callable[[Any, Any], bool]) -> Callable[..., Filter]:
    def build(
        leftField: Any = None,
        rightValue: Any = None,
        rightField: Any = None,
        leftValue: Any = None,
        maxError: Any = None,
    ) -> Filter:
        def check(element: Any) -> bool:
            left = _operand(
                element, leftField if leftField is not None else ("item" if leftValue is None else None), leftValue
            )
            right = _operand(element, rightField, rightValue)
            if left is None or right is None:
                return False
            try:
                return bool(test(left, right))
            except TypeError:
                return False

        dates = bounds = None
        if name == "intersects":
            geometry = rightValue if leftValue is None else leftValue
            if geometry is not None:
                bounds = as_geometry(geometry, "Filter.intersects").shape
        return Filter(check, dates, bounds)

    return build


def _geo(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    return lambda a, b: op(as_geometry(a).shape, as_geometry(b).shape)


def _date_range_contains(
    leftField: Any = None, rightValue: Any = None, rightField: Any = None, leftValue: Any = None
) -> Filter:
    rng = as_range(leftValue, "Filter.dateRangeContains") if leftValue is not None else None

    def check(element: Any) -> bool:
        r = rng or as_range(properties_of(element).get(leftField), "Filter.dateRangeContains")
        value = rightValue if rightField is None else properties_of(element).get(rightField)
        return value is not None and r.contains(as_date(value))

    return Filter(check, dates=rng)


def _calendar_range(start: Any, end: Any = None, field: Any = "day_of_year") -> Filter:
    end = start if end is None else end
    unit = str(field or "day_of_year")

    def part(element: Any) -> int:
        when = as_date(properties_of(element).get("system:time_start", 0))
        return {
            "year": when.year,
            "month": when.month,
            "week": int(when.strftime("%U")),
            "day_of_year": when.timetuple().tm_yday,
            "day_of_month": when.day,
            "day_of_week": when.weekday(),
            "hour": when.hour,
            "minute": when.minute,
        }[unit]

    def check(element: Any) -> bool:
        v = part(element)
        return start <= v <= end if start <= end else (v >= start or v <= end)

    if unit not in ("year", "month", "week", "day_of_year", "day_of_month", "day_of_week", "hour", "minute"):
        raise EvaluationError(f"Filter.calendarRange: Unknown field '{field}'.")
    return Filter(check)


def _within_distance(
    distance: Any,
    leftField: Any = None,
    rightValue: Any = None,
    rightField: Any = None,
    leftValue: Any = None,
    maxError: Any = None,
) -> Filter:
    """Within ``distance`` metres (planar degrees scaled at the equator: close enough for a filter)."""
    test = _geo(lambda a, b: shapely.distance(a, b) * 111_319.49 <= float(distance))
    return _comparison("withinDistance", test)(leftField, rightValue, rightField, leftValue)


def _and(filters: Any) -> Filter:
    fs = [_as_filter(f, "Filter.and") for f in filters]
    dates = next((f.dates for f in fs if f.dates is not None), None)
    bounds = next((f.bounds for f in fs if f.bounds is not None), None)
    return Filter(lambda e: all(f(e) for f in fs), dates, bounds)


FILTERS: dict[str, Callable[..., Any]] = {
    "Filter.always": lambda: Filter(lambda e: True),
    "Filter.never": lambda: Filter(lambda e: False),
    "Filter.and": _and,
    "Filter.or": lambda filters: Filter(lambda e: any(_as_filter(f, "Filter.or")(e) for f in filters)),
    "Filter.not": lambda filter: Filter(lambda e: not _as_filter(filter, "Filter.not")(e)),
    "Filter.notNull": lambda properties: Filter(lambda e: all(properties_of(e).get(p) is not None for p in properties)),
    "Filter.hasGeometry": lambda: Filter(lambda e: isinstance(e, Feature) and e.geometry is not None),
    "Filter.dateRangeContains": _date_range_contains,
    "Filter.calendarRange": _calendar_range,
    "Filter.dayOfYear": lambda start, end: _calendar_range(start, end, "day_of_year"),
    "Filter.rangeContains": lambda field, minValue, maxValue: Filter(
        lambda e: (v := properties_of(e).get(field)) is not None and minValue <= v <= maxValue
    ),
    "Filter.maxDifference": lambda difference, leftField=None, rightValue=None, rightField=None, leftValue=None: (
        _comparison("maxDifference", lambda a, b: abs(a - b) <= difference)(
            leftField, rightValue, rightField, leftValue
        )
    ),
    "Filter.intersects": _comparison("intersects", _geo(shapely.intersects)),
    "Filter.disjoint": _comparison("disjoint", _geo(shapely.disjoint)),
    "Filter.contains": _comparison("contains", _geo(shapely.contains)),
    "Filter.isContained": _comparison("isContained", _geo(shapely.within)),
    "Filter.withinDistance": _within_distance,
}
for _name, _test in {
    "eq": lambda a, b: a == b,
    "equals": lambda a, b: a == b,
    "neq": lambda a, b: a != b,
    "notEquals": lambda a, b: a != b,
    "lt": lambda a, b: a < b,
    "lessThan": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "lessThanOrEquals": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "greaterThan": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "greaterThanOrEquals": lambda a, b: a >= b,
    "stringStartsWith": lambda a, b: str(a).startswith(str(b)),
    "stringEndsWith": lambda a, b: str(a).endswith(str(b)),
    "stringContains": lambda a, b: str(b) in str(a),
    "inList": lambda a, b: a in b if isinstance(b, list) else b in a,
    "listContains": lambda a, b: b in a if isinstance(a, list) else a in b,
}.items():
    FILTERS[f"Filter.{_name}"] = _comparison(_name, _test)

# ------------------------------------------------------------------------------------ reducers


def _as_reducer(value: Any, fn: str) -> Reducer:
    if isinstance(value, Reducer):
        return value
    raise EvaluationError(f"{fn}: expected a Reducer, got {type(value).__name__}.")


def _masked_stat(fn: Callable[[np.ma.MaskedArray], Any]) -> Callable[[np.ma.MaskedArray], list[Any]]:
    def apply(data: np.ma.MaskedArray) -> list[Any]:
        with np.errstate(all="ignore"):
            return [np.ma.asarray(fn(data))]

    return apply


def _percentiles(ps: list[float]) -> Callable[[np.ma.MaskedArray], list[Any]]:
    """Percentiles along axis 0 of the valid values, linearly interpolated between ranks, for
    every pixel at once (numpy's nanpercentile loops over pixels in Python)."""

    def apply(data: np.ma.MaskedArray) -> list[Any]:
        values = np.ma.filled(data.astype(float), np.nan)
        if values.shape[0] == 0:
            return [np.ma.masked_all(values.shape[1:]) for _ in ps]
        ordered = np.sort(values, axis=0)  # NaN (masked) last
        n = np.sum(~np.isnan(values), axis=0)
        out = []
        for p in ps:
            pos = np.clip(p / 100.0 * (n - 1), 0, None)
            lo = np.floor(pos).astype(np.intp)
            hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
            a = np.take_along_axis(ordered, lo[None, ...], axis=0)[0]
            b = np.take_along_axis(ordered, hi[None, ...], axis=0)[0]
            value = a + (b - a) * (pos - lo)
            out.append(np.ma.masked_array(value, mask=n == 0))
        return out

    return apply


def _percentile(
    percentiles: Any, outputNames: Any = None, maxBuckets: Any = None, minBucketWidth: Any = None, maxRaw: Any = None
) -> Reducer:
    ps = [float(p) for p in percentiles]
    names = tuple(outputNames or [f"p{int(p) if float(p).is_integer() else p}" for p in ps])
    return Reducer("percentile", names, _percentiles(ps))


def _combine(reducer1: Any, reducer2: Any, outputPrefix: Any = "", sharedInputs: Any = False) -> Reducer:
    a, b = _as_reducer(reducer1, "Reducer.combine"), _as_reducer(reducer2, "Reducer.combine")
    prefix = str(outputPrefix or "")
    return Reducer(
        f"{a.name}+{b.name}", a.outputs + tuple(prefix + o for o in b.outputs), lambda data: a.fn(data) + b.fn(data)
    )


def _count(data: np.ma.MaskedArray) -> Any:
    return np.ma.asarray((~np.ma.getmaskarray(data)).sum(axis=0))


REDUCERS: dict[str, Callable[..., Any]] = {
    "Reducer.mean": lambda: Reducer("mean", ("mean",), _masked_stat(lambda d: d.mean(axis=0))),
    "Reducer.median": lambda maxBuckets=None, minBucketWidth=None, maxRaw=None: Reducer(
        "median", ("median",), lambda d: [_percentiles([50.0])(d)[0]]
    ),
    "Reducer.min": lambda numInputs=None: Reducer("min", ("min",), _masked_stat(lambda d: d.min(axis=0))),
    "Reducer.max": lambda numInputs=None: Reducer("max", ("max",), _masked_stat(lambda d: d.max(axis=0))),
    "Reducer.sum": lambda: Reducer("sum", ("sum",), _masked_stat(lambda d: d.sum(axis=0))),
    "Reducer.product": lambda: Reducer("product", ("product",), _masked_stat(lambda d: d.prod(axis=0))),
    "Reducer.count": lambda: Reducer("count", ("count",), lambda d: [_count(d)]),
    "Reducer.countEvery": lambda: Reducer(
        "count", ("count",), lambda d: [np.ma.asarray(np.full(d.shape[1:], d.shape[0]))]
    ),
    "Reducer.stdDev": lambda: Reducer("stdDev", ("stdDev",), _masked_stat(lambda d: d.std(axis=0))),
    "Reducer.sampleStdDev": lambda: Reducer("sampleStdDev", ("stdDev",), _masked_stat(lambda d: d.std(axis=0, ddof=1))),
    "Reducer.variance": lambda: Reducer("variance", ("variance",), _masked_stat(lambda d: d.var(axis=0))),
    "Reducer.sampleVariance": lambda: Reducer(
        "sampleVariance", ("variance",), _masked_stat(lambda d: d.var(axis=0, ddof=1))
    ),
    "Reducer.minMax": lambda: Reducer(
        "minMax", ("min", "max"), lambda d: [np.ma.asarray(d.min(axis=0)), np.ma.asarray(d.max(axis=0))]
    ),
    "Reducer.first": lambda: Reducer("first", ("first",), lambda d: [np.ma.asarray(d[0])]),
    "Reducer.last": lambda: Reducer("last", ("last",), lambda d: [np.ma.asarray(d[-1])]),
    "Reducer.firstNonNull": lambda: Reducer("firstNonNull", ("first",), lambda d: [first_valid(d)]),
    "Reducer.lastNonNull": lambda: Reducer("lastNonNull", ("last",), lambda d: [first_valid(d[::-1])]),
    "Reducer.percentile": _percentile,
    "Reducer.combine": _combine,
    "Reducer.setOutputs": lambda reducer, outputs: Reducer(reducer.name, tuple(outputs), reducer.fn),
    "Reducer.getOutputs": lambda reducer: list(reducer.outputs),
    "Reducer.mode": lambda maxBuckets=None, minBucketWidth=None, maxRaw=None: Reducer("mode", ("mode",), _mode),
}


def first_valid(d: np.ma.MaskedArray) -> Any:
    mask = np.ma.getmaskarray(d)
    index = np.argmax(~mask, axis=0)
    picked = np.take_along_axis(np.ma.getdata(d), index[None, ...], axis=0)[0]
    return np.ma.masked_array(picked, mask=mask.all(axis=0))


def _mode(d: np.ma.MaskedArray) -> list[Any]:
    data, mask = np.ma.getdata(d), np.ma.getmaskarray(d)
    flat = data.reshape(data.shape[0], -1)
    fmask = mask.reshape(mask.shape[0], -1)
    out = np.zeros(flat.shape[1])
    for j in range(flat.shape[1]):
        vals = flat[~fmask[:, j], j]
        if vals.size:
            u, c = np.unique(vals, return_counts=True)
            out[j] = u[np.argmax(c)]
    return [np.ma.masked_array(out.reshape(data.shape[1:]), mask=mask.all(axis=0))]


# ------------------------------------------------------------------------------------ arrays


def as_array(value: Any, fn: str = "Array") -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (list, int, float)) and not isinstance(value, bool):
        return np.asarray(value, dtype=float if _has_float(value) else np.int64)
    raise EvaluationError(f"{fn}: expected an Array, got {type(value).__name__}.")


def _has_float(value: Any) -> bool:
    if isinstance(value, list):
        return any(_has_float(v) for v in value)
    return isinstance(value, float)


def _array_binary(name: str) -> Callable[..., Any]:
    op = BINARY[name]
    return lambda left, right: op(as_array(left, f"Array.{name}"), as_array(right, f"Array.{name}"))


def _array_reduce(array: Any, reducer: Any, axes: Any, fieldAxis: Any = None) -> np.ndarray:
    a = as_array(array, "Array.reduce").astype(float)
    red = _as_reducer(reducer, "Array.reduce")
    out = a
    for axis in sorted((int(x) for x in axes), reverse=True):
        moved = np.moveaxis(out, axis, 0)
        reduced = np.ma.getdata(red.fn(np.ma.masked_invalid(moved))[0])
        out = np.expand_dims(reduced, axis)  # EE keeps a reduced axis, of length 1
    return out


def _array_slice(array: Any, axis: Any = 0, start: Any = 0, end: Any = None, step: Any = 1) -> np.ndarray:
    a, axis = as_array(array, "Array.slice"), int(axis or 0)
    stop = a.shape[axis] if end is None else int(end)
    return np.take(a, range(int(start or 0), stop, int(step or 1)), axis=axis)


def _array_sort(array: Any, keys: Any = None) -> np.ndarray:
    a = as_array(array, "Array.sort")
    return a[np.argsort(as_array(keys if keys is not None else a), kind="stable")]


def _array_accum(array: Any, axis: Any, reducer: Any = None) -> np.ndarray:
    """Running sums (EE's default), products, minima or maxima along ``axis``."""
    name = "sum" if reducer is None else _as_reducer(reducer, "Array.accum").name
    ops: dict[str, Callable[..., np.ndarray]] = {
        "sum": np.cumsum, "product": np.cumprod, "min": np.minimum.accumulate, "max": np.maximum.accumulate,
    }  # fmt: skip
    if name not in ops:
        raise EvaluationError(f"Array.accum: the emulator accumulates with sum, product, min or max, not {name}.")
    return ops[name](as_array(array, "Array.accum"), axis=int(axis))


def _array_unary(op: Callable[[Any], Any]) -> Callable[..., Any]:
    return lambda input: op(as_array(input))


ARRAYS: dict[str, Callable[..., Any]] = {
    "Array": lambda values, pixelType=None: as_array(values),
    "Array.get": lambda array, position: _scalar(as_array(array)[tuple(int(p) for p in position)]),
    "Array.length": lambda array: list(as_array(array).shape),
    "Array.toList": lambda array: as_array(array).tolist(),
    "Array.slice": _array_slice,
    "Array.cat": lambda arrays, axis=0: np.concatenate([as_array(a) for a in arrays], axis=int(axis or 0)),
    "Array.sort": _array_sort,
    "Array.transpose": lambda array, axis1=0, axis2=1: np.swapaxes(as_array(array), int(axis1), int(axis2)),
    "Array.reshape": lambda array, shape: as_array(array).reshape([int(x) for x in as_array(shape).ravel()]),
    "Array.identity": lambda size: np.identity(int(size)),
    "Array.dotProduct": lambda array1, array2: _scalar(np.dot(as_array(array1), as_array(array2))),
    "Array.matrixMultiply": lambda left, right: np.matmul(as_array(left), as_array(right)),
    "Array.argmax": lambda array: list(np.unravel_index(int(np.argmax(as_array(array))), as_array(array).shape)),
    "Array.reduce": _array_reduce,
    "Array.accum": lambda array, axis, reducer=None: _array_accum(array, axis, reducer),
    **{f"Array.{n}": _array_binary(n) for n in BINARY},
    **{f"Array.{n}": _array_unary(op) for n, op in UNARY.items()},
}


# ------------------------------------------------------------------------------------ constructors


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


def _feature(geometry: Any = None, metadata: Any = None) -> Feature:
    return Feature(as_geometry(geometry) if geometry is not None else None, dict(metadata or {}))


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


def _flatten(collection: Any) -> FeatureCollection:
    if isinstance(collection, FeatureCollection):
        return collection
    if isinstance(collection, list):
        return FeatureCollection([f for c in collection for f in _feature_collection(c).features])
    raise EvaluationError("Collection.flatten: expected a collection of collections.")


def _feature_collection(value: Any) -> FeatureCollection:
    if isinstance(value, FeatureCollection):
        return value
    raise EvaluationError(f"Expected a FeatureCollection, got {type(value).__name__}.")


CONSTRUCTORS: dict[str, Callable[..., Any]] = {
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
    "Collection.flatten": _flatten,
}


FUNCTIONS: dict[str, Callable[..., Any]] = {
    **CONSTRUCTORS,
    **ARRAYS,
    **{f"Number.{n}": _number_binary(n) for n in BINARY},
    **{f"Number.{n}": _number_unary(n) for n in UNARY},
    **{f"Number.{n}": _number_cast(t) for n, t in CASTS.items()},
    "Number.clamp": _number_clamp,
    "Number.unitScale": _number_unit_scale,
    "Number.parse": _number_parse,
    "Number.format": _number_format,
    **STRING,
    **LISTS,
    **DICTIONARIES,
    **DATES,
    **GEOMETRY,
    **ELEMENTS,
    **FILTERS,
    **REDUCERS,
}

__all__ = ["BINARY", "CASTS", "FUNCTIONS", "UNARY", "Closure", "as_date", "as_geometry", "elements", "like"]
