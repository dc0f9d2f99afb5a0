"""The values an EE expression evaluates to, in the emulator: geometries, features and
collections, lazy images (bands are functions of longitude and latitude), image collections,
dates, filters, reducers and user functions."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from shapely.geometry import mapping

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


BandFn = Callable[[np.ndarray, np.ndarray], Any]  # (lon, lat) -> values, a masked array where masked


@dataclass(frozen=True)
class Band:
    name: str
    fn: BandFn  # (lon, lat) arrays -> values (np.ma.MaskedArray where pixels are masked)
    dtype: str  # numpy dtype name


@dataclass(frozen=True)
class Image:
    bands: tuple[Band, ...]
    clip: Any = None  # shapely geometry outside which pixels are masked
    region: Any = None  # export bounds (shapely, EPSG:4326)
    scale: float | None = None  # metres per pixel
    crs: str = "EPSG:4326"
    properties: tuple[tuple[str, Any], ...] = ()
    footprint: Any = None  # shapely geometry of the scene (catalogue images), for filterBounds

    @property
    def props(self) -> dict[str, Any]:
        return dict(self.properties)

    def sample_masked(self, lon: np.ndarray, lat: np.ndarray) -> dict[str, np.ma.MaskedArray]:
        """Each band's values at the points, masked where EE would mask them (the band's own
        mask, and outside the clip geometry)."""
        outside = None
        if self.clip is not None:
            outside = ~(shapely.contains_xy(self.clip, lon, lat) | shapely.intersects_xy(self.clip, lon, lat))
        out = {}
        for b in self.bands:
            raw = b.fn(lon, lat)
            mask = np.ma.getmaskarray(raw) if np.ma.isMaskedArray(raw) else np.zeros((), dtype=bool)
            mask = np.broadcast_to(mask, lon.shape)
            if outside is not None:
                mask = mask | outside
            out[b.name] = np.ma.masked_array(np.broadcast_to(np.ma.getdata(raw), lon.shape), mask=mask)
        return out

    def sample(self, lon: np.ndarray, lat: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Band values at the points and where every band is valid (True)."""
        masked = self.sample_masked(lon, lat)
        valid = np.ones(lon.shape, dtype=bool)
        for data in masked.values():
            valid &= ~np.ma.getmaskarray(data)
        values = {b.name: masked[b.name].data.astype(b.dtype, copy=False) for b in self.bands}
        return values, valid


@dataclass(frozen=True)
class DateRange:
    start: dt.datetime
    end: dt.datetime

    def contains(self, when: dt.datetime) -> bool:
        return self.start <= when < self.end


@dataclass(frozen=True)
class Filter:
    """A predicate on an element (a Feature or an Image)."""

    test: Callable[[Any], bool]
    #: the date range and region a catalogue can use to enumerate only what may pass
    dates: DateRange | None = None
    bounds: Any = None

    def __call__(self, element: Any) -> bool:
        return bool(self.test(element))


@dataclass(frozen=True)
class Reducer:
    """Reduces values along axis 0 of a masked array: ``fn(data) -> [output arrays]``."""

    name: str
    outputs: tuple[str, ...]
    fn: Callable[[np.ma.MaskedArray], list[Any]]
    #: how many inputs each step takes (Reducer.combine of two single-input reducers: still 1)
    inputs: int = 1


@dataclass
class ImageCollection:
    """Images, listed (``images``), or lazily from the catalogue (``source``) or a merge
    (``parts``), then filtered and mapped in order (``steps``). A lazy collection is enumerated
    only for the dates and bounds its filters name, or those of the window being computed."""

    images: list[Any] | None = None
    source: Any = None  # catalogue.Dataset
    parts: list[ImageCollection] | None = None
    steps: list[tuple[str, Any]] = field(default_factory=list)  # ("filter", Filter) | ("map", fn)
    #: scenes already made from ``source``, shared by every collection derived from one load: two
    #: chains over the same scenes (two maps of one collection) compute each scene once
    scenes: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)
    #: resolved images by bounds and dates: each band of a reduction asks again, and must get the
    #: same image objects (whose computed windows are remembered)
    _resolved: dict[Any, list[Any]] = field(default_factory=dict, repr=False, compare=False)

    def then(self, kind: str, step: Any) -> ImageCollection:
        return ImageCollection(self.images, self.source, self.parts, [*self.steps, (kind, step)], self.scenes)

    @property
    def filters(self) -> list[Filter]:
        return [s for k, s in self.steps if k == "filter"]

    def bounds(self) -> Any:
        """The region this collection is limited to (its bounds filter, or its parts'), if any."""
        own = next((f.bounds for f in self.filters if f.bounds is not None), None)
        if own is not None:
            return own
        if self.parts:
            shapes = [p.bounds() for p in self.parts]
            return None if any(b is None for b in shapes) else shapely.union_all(shapes)
        if self.images is not None:
            shapes = [i.footprint for i in self.images if getattr(i, "footprint", None) is not None]
            return shapely.union_all(shapes) if shapes and len(shapes) == len(self.images) else None
        return None

    def prototype(self) -> Any:
        """An image with the bands every image of the collection has: the first listed image,
        or a scene of the catalogue put through the collection's maps (filters do not change
        bands). It tells the band names of a composite without enumerating a whole catalogue."""
        if self.images is not None:
            image = self.images[0] if self.images else None
        else:
            image = self.parts[0].prototype() if self.parts else self.source.prototype()
        for kind, step in self.steps:
            if kind == "map" and image is not None:
                image = step(image)
        return image

    def resolve(self, bounds: Any = None, dates: DateRange | None = None) -> list[Any]:
        key = (None if bounds is None else bounds.wkb, dates)
        if key not in self._resolved:
            if len(self._resolved) > 64:
                self._resolved.clear()
            self._resolved[key] = self._resolve(bounds, dates)
        return self._resolved[key]

    def _resolve(self, bounds: Any, dates: DateRange | None) -> list[Any]:
        own_dates = next((f.dates for f in self.filters if f.dates is not None), None)
        if own_dates is not None:
            dates = (
                own_dates
                if dates is None
                else DateRange(max(dates.start, own_dates.start), min(dates.end, own_dates.end))
            )
        region = next((f.bounds for f in self.filters if f.bounds is not None), None)
        if region is not None and bounds is not None:
            region = shapely.intersection(region, bounds)
        region = region if region is not None else bounds
        if self.images is not None:
            items = list(self.images)
        elif self.parts is not None:
            items = [image for part in self.parts for image in part.resolve(region, dates)]
        else:
            items = self.source.scenes(dates, region, self.scenes)
        for kind, step in self.steps:
            if kind == "filter":
                items = [i for i in items if step(i)]
            else:
                items = [out for i in items if (out := step(i)) is not None]
        return items


class Closure:
    """A user function (``functionDefinitionValue``): called with positional arguments."""

    def __init__(self, names: list[str], call: Callable[[dict[str, Any]], Any]) -> None:
        self.names, self._call = names, call

    def __call__(self, *args: Any) -> Any:
        return self._call(dict(zip(self.names, args, strict=False)))


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
            "properties": to_json(value.props),
        }
    if isinstance(value, dt.datetime):
        return {"type": "Date", "value": int(value.timestamp() * 1000)}
    if isinstance(value, DateRange):
        return {"type": "DateRange", "dates": [int(value.start.timestamp() * 1000), int(value.end.timestamp() * 1000)]}
    if isinstance(value, ImageCollection):
        images = value.resolve()
        return {"type": "ImageCollection", "bands": [], "features": [to_json(i) for i in images]}
    if isinstance(value, (float, np.floating)) and not np.isfinite(value):
        return None
    if isinstance(value, list):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
