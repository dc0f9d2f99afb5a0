"""A synthetic public catalogue under the real ids and band names of the datasets people use most.

Pixel values are deterministic functions of place and time, within each band's real range and
with its real scale factors: a smooth land-cover field (vegetation, bare ground, water) and a
seasonal cycle give a vegetation index; reflectances are derived from it (so NDVI computed from
red and near-infrared is that index); each scene has its own cloud field covering about its
``CLOUD_COVER`` share of the scene, flagged in the QA bands as the real products flag clouds.
Scenes follow a realistic revisit on a fixed lattice of footprints. Nothing is random: the same
request gives the same pixels, so tests can assert values.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely

from gee_emulator.functions_image import memo
from gee_emulator.values import Band, DateRange, EvaluationError, Image, ImageCollection

_UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=_UTC)
#: enumerating a catalogue collection needs bounds; without filterBounds (or an export region)
#: this many scenes at most are listed before the request is refused as too large
MAX_SCENES = 20_000


def _hash(*parts: Any) -> float:
    """A number in [0, 1) fixed by ``parts``."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


# ------------------------------------------------------------------------------------ surface model


def landcover(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """0 = water, about 0.3 = bare ground, 1 = dense vegetation; smooth at 1-50 km scales. The
    same for every scene: computed once per window of points."""
    return _landcover(lon, lat)


def _landcover_field(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    x, y = np.radians(lon) * 40, np.radians(lat) * 40
    tau = 2 * np.pi
    v = (
        0.5
        + 0.2 * np.sin(x * 1.7 + y * 0.9)  # regions (hundreds of km)
        + 0.12 * np.sin(y * 3.1 - x * 1.3) * np.cos(x * 2.3)
        + 0.08 * np.sin(x * 11.0) * np.sin(y * 13.0)  # landscapes (tens of km)
        + 0.1 * np.sin(lon * tau / 0.037) * np.sin(lat * tau / 0.029)  # fields (a few km)
        + 0.05 * np.sin(lon * tau / 0.0091 + lat * tau / 0.013)  # parcels (hundreds of m)
    )
    return np.clip(v, 0.0, 1.0).astype(np.float32)


_landcover = memo(_landcover_field)


def season(doy: float, lat: np.ndarray) -> np.ndarray:
    """-1 (winter) .. 1 (summer peak around the end of July in the north)."""
    phase = np.sin(2 * np.pi * (doy - 120) / 365.25)
    return np.where(lat >= 0, phase, -phase).astype(np.float32)


def ndvi_field(lon: np.ndarray, lat: np.ndarray, doy: float, cover: np.ndarray | None = None) -> np.ndarray:
    v = landcover(lon, lat) if cover is None else cover
    green = np.clip(0.1 + 0.7 * v * (0.65 + 0.35 * season(doy, lat)), 0.05, 0.92)
    return np.where(v < 0.12, -0.25 + v, green).astype(np.float32)


def reflectances(ndvi: np.ndarray, doy: float = 180.0) -> dict[str, np.ndarray]:
    """Surface reflectance (0..1) per spectral region, consistent with ``ndvi``; water is dark,
    a little brighter in summer (turbidity, algae)."""
    water = ndvi < 0
    murk = 0.01 * np.sin(2 * np.pi * (doy - 120) / 365.25)
    red = np.where(water, 0.04 + murk, 0.13 - 0.1 * np.clip(ndvi, 0, 1))
    nir = np.where(water, 0.02 + murk / 2, red * (1 + ndvi) / (1 - ndvi))
    return {
        "coastal": 0.75 * red + 0.02,
        "blue": 0.8 * red + 0.02,
        "green": 0.85 * red + 0.035,
        "red": red,
        "re1": 0.5 * (red + nir),
        "re2": 0.3 * red + 0.7 * nir,
        "re3": 0.15 * red + 0.85 * nir,
        "nir": nir,
        "nir_narrow": 0.98 * nir,
        "vapour": 0.5 * nir,
        "swir1": np.where(water, 0.01, 0.28 - 0.12 * np.clip(ndvi, 0, 1)),
        "swir2": np.where(water, 0.005, 0.2 - 0.11 * np.clip(ndvi, 0, 1)),
    }


def cloud_field(lon: np.ndarray, lat: np.ndarray, seed: float) -> np.ndarray:
    """0..1, smooth blobs of a few km; a scene is cloudy where it exceeds 1 - cloud share."""
    a, b, c = seed * 97.0, seed * 53.0, 20 + seed * 15
    x, y = np.radians(lon) * 600, np.radians(lat) * 600
    f = 0.5 + 0.25 * np.sin(x / c * 3 + a) * np.cos(y / c * 2.5 + b) + 0.25 * np.sin((x + y) / c * 4.3 + a * b)
    return np.clip(f, 0, 1).astype(np.float32)


def cloud_threshold(seed: float, share: float, footprint: Any) -> float:
    """The cloud-field value above which ``share`` (0..1) of the scene is cloudy: the quantile of
    the scene's own field over its footprint, so that the flagged share matches the property."""
    if share <= 0:
        return 2.0
    minx, miny, maxx, maxy = footprint.bounds if footprint is not None else (-180, -60, 180, 60)
    x, y = np.meshgrid(np.linspace(minx, maxx, 64), np.linspace(miny, maxy, 64))
    return float(np.quantile(cloud_field(x, y, seed), 1 - min(share, 1.0)))


def elevation(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Metres: plains, hills and ridges; low where the land-cover field has water."""
    x, y = np.radians(lon) * 40, np.radians(lat) * 40
    base = 150 + 600 * (0.5 + 0.5 * np.sin(x * 0.7 + 0.4) * np.cos(y * 0.9))
    ridges = 350 * np.abs(np.sin(x * 3.7 + y * 2.1)) * (0.5 + 0.5 * np.sin(y * 1.3))
    detail = 25 * np.sin(x * 41.0) * np.cos(y * 37.0)
    return (base + ridges + detail).astype(np.float32)


# ------------------------------------------------------------------------------------ datasets


@dataclass(frozen=True)
class Scene:
    dataset: str
    index: str
    time: dt.datetime
    footprint: Any  # shapely
    cloud: float  # 0..100
    seed: float
    threshold: float = 2.0  # cloud-field value above which a pixel is cloudy
    properties: dict[str, Any] = field(default_factory=dict)


BandMaker = Callable[["Scene", Callable[..., dict[str, Any]]], Callable[[np.ndarray, np.ndarray], Any]]


@dataclass(frozen=True)
class Dataset:
    id: str
    title: str
    bands: tuple[tuple[str, str], ...]  # (name, dtype)
    start: dt.datetime
    end: dt.datetime | None  # None: still acquiring (up to "now")
    revisit_days: float
    phase_days: float
    cell_deg: float  # footprint lattice step; 0 = one global image per date
    footprint_deg: float
    values: Callable[[Scene, np.ndarray, np.ndarray, dict[str, Any]], dict[str, Any]]
    scene_properties: Callable[[Scene], dict[str, Any]]
    cloud_property: str | None = None
    #: composites restart on 1 January (MODIS 16-day products: day 1, 17, ... 353)
    yearly: bool = False

    def _times(self, first: dt.datetime, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
        if self.yearly:
            out = []
            for year in range(start.year, end.year + 1):
                jan1 = dt.datetime(year, 1, 1, tzinfo=_UTC)
                out += [t for k in range(23) if start <= (t := jan1 + dt.timedelta(days=16 * k)) < end]
            return [t for t in out if t >= self.start]
        k = max(0, math.ceil((start - first).total_seconds() / 86400 / self.revisit_days))
        out = []
        while (when := first + dt.timedelta(days=k * self.revisit_days)) < end:
            if when >= start:
                out.append(when)
            k += 1
        return out

    def scenes(self, dates: DateRange | None, region: Any, made: dict[Any, Image] | None = None) -> list[Image]:
        """The scenes whose footprint intersects ``region`` and whose time lies in ``dates``;
        ``made`` keeps the scene images already made (the same scene is the same object)."""
        made = {} if made is None else made
        start = max(self.start, dates.start) if dates else self.start
        last = self.end or dt.datetime.now(_UTC)
        end = min(last, dates.end) if dates else last
        if end <= start:
            return []
        if self.cell_deg == 0:
            cells = [(0, 0, None)]
        else:
            if region is None:
                raise EvaluationError(
                    f"ImageCollection.load: Collection query aborted after accumulating over {MAX_SCENES} "
                    f"elements: filter '{self.id}' by bounds (filterBounds) or export over a region."
                )
            cells = self._cells(region)
        images: list[Image] = []
        for i, j, footprint in cells:
            offset = _hash(self.id, i, j) * self.revisit_days if self.cell_deg else 0.0
            first = self.start + dt.timedelta(days=self.phase_days + offset)
            for when in self._times(first, start, end):
                key = (i, j, when)
                if key not in made:
                    made[key] = self._image(i, j, footprint, when)
                images.append(made[key])
                if len(images) > MAX_SCENES:
                    raise EvaluationError(
                        f"ImageCollection.load: Collection query aborted after accumulating over {MAX_SCENES} "
                        f"elements: narrow '{self.id}' by date or bounds."
                    )
        images.sort(key=lambda img: img.props["system:time_start"])
        return images

    def prototype(self) -> Image:
        """A scene of the dataset (its bands and kind of properties), wherever it lies."""
        if self.cell_deg == 0:
            return self._image(0, 0, None, self.start)
        size = self.footprint_deg
        return self._image(0, 0, shapely.box(-size / 2, -size / 2, size / 2, size / 2), self.start)

    def _cells(self, region: Any) -> list[tuple[int, int, Any]]:
        step, size = self.cell_deg, self.footprint_deg
        minx, miny, maxx, maxy = region.bounds
        pad = (size - step) / 2
        out = []
        for i in range(math.floor((minx - pad) / step), math.floor((maxx + pad) / step) + 1):
            for j in range(math.floor((miny - pad) / step), math.floor((maxy + pad) / step) + 1):
                cx, cy = (i + 0.5) * step, (j + 0.5) * step
                box = shapely.box(cx - size / 2, max(cy - size / 2, -90), cx + size / 2, min(cy + size / 2, 90))
                if box.intersects(region):
                    out.append((i, j, box))
        return out

    def _image(self, i: int, j: int, footprint: Any, when: dt.datetime) -> Image:
        seed = _hash(self.id, i, j, when.date())
        # cloud cover: mostly low, sometimes overcast (a skewed, deterministic distribution)
        cloud = round(100 * seed**1.6, 2) if self.cloud_property else 0.0
        scene = Scene(self.id, "", when, footprint, cloud, seed)
        props = self.scene_properties(scene) | {
            "system:time_start": int((when - _EPOCH).total_seconds() * 1000),
            "system:time_end": int((when - _EPOCH).total_seconds() * 1000),
        }
        if self.cloud_property:
            props[self.cloud_property] = cloud
        index = props.get("system:index") or f"{i}_{j}_{when:%Y%m%d}"
        props["system:index"] = index
        threshold = cloud_threshold(seed, cloud / 100, footprint) if self.cloud_property else 2.0
        scene = Scene(self.id, index, when, footprint, cloud, seed, threshold, props)
        computed = memo(lambda lon, lat: self._masked(scene, lon, lat))
        bands = tuple(
            Band(name, (lambda n: lambda lon, lat: computed(lon, lat)[n])(name), dtype) for name, dtype in self.bands
        )
        return Image(bands, properties=tuple(props.items()), footprint=footprint)

    def _masked(self, scene: Scene, lon: np.ndarray, lat: np.ndarray) -> dict[str, Any]:
        reads = getattr(_READS, "keys", None)
        if reads is not None:  # a scene whose pixels this computation reads
            reads.add((self.id, scene.index))
        if scene.footprint is None:
            return self.values(scene, lon, lat, {})
        # footprints are boxes: compare bounds (much cheaper than a point-in-polygon test), and
        # compute nothing for a window the scene does not cover
        minx, miny, maxx, maxy = scene.footprint.bounds
        outside = (lon < minx) | (lon > maxx) | (lat < miny) | (lat > maxy)
        if outside.all():
            return {name: np.ma.masked_all(lon.shape, dtype=dtype) for name, dtype in self.bands}
        values = self.values(scene, lon, lat, {})
        return {n: np.ma.masked_array(np.broadcast_to(v, lon.shape), mask=outside) for n, v in values.items()}


def _doy(when: dt.datetime) -> float:
    return when.timetuple().tm_yday + when.hour / 24


def _surface(scene: Scene, lon: np.ndarray, lat: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    cover = landcover(lon, lat)
    ndvi = ndvi_field(lon, lat, _doy(scene.time), cover)
    refl = reflectances(ndvi, _doy(scene.time))
    clouds = cloud_field(lon, lat, scene.seed)
    threshold = scene.threshold
    cloudy = clouds > threshold
    shadow = (~cloudy) & (clouds > threshold - 0.06)
    for name, r in refl.items():  # clouds are bright, shadows dark
        refl[name] = np.where(cloudy, 0.45 + 0.1 * clouds, np.where(shadow, r * 0.4, r))
    return refl, cloudy, shadow


def _landsat_values(scene: Scene, lon: np.ndarray, lat: np.ndarray, _: dict[str, Any]) -> dict[str, Any]:
    refl, cloudy, shadow = _surface(scene, lon, lat)
    water = landcover(lon, lat) < 0.12

    def dn(r: np.ndarray) -> np.ndarray:  # Collection 2 Level 2: reflectance = DN * 0.0000275 - 0.2
        return np.clip(np.round((r + 0.2) / 0.0000275), 1, 65455).astype(np.uint16)

    kelvin = 285 + 12 * season(_doy(scene.time), lat) - 8 * np.clip(landcover(lon, lat), 0, 1)
    kelvin = np.where(cloudy, 255.0, kelvin)
    # QA_PIXEL bits: 1 dilated cloud, 3 cloud, 4 cloud shadow, 6 clear, 7 water
    qa = (
        (cloudy.astype(np.uint16) << 3)
        | (cloudy.astype(np.uint16) << 1)
        | (shadow.astype(np.uint16) << 4)
        | ((~cloudy & ~shadow).astype(np.uint16) << 6)
        | ((water & ~cloudy).astype(np.uint16) << 7)
    )
    return {
        "SR_B1": dn(refl["coastal"]),
        "SR_B2": dn(refl["blue"]),
        "SR_B3": dn(refl["green"]),
        "SR_B4": dn(refl["red"]),
        "SR_B5": dn(refl["nir"]),
        "SR_B6": dn(refl["swir1"]),
        "SR_B7": dn(refl["swir2"]),
        # surface temperature: kelvin = DN * 0.00341802 + 149.0
        "ST_B10": np.clip(np.round((kelvin - 149.0) / 0.00341802), 1, 65535).astype(np.uint16),
        "QA_PIXEL": qa.astype(np.uint16),
        "QA_RADSAT": np.zeros(lon.shape, dtype=np.uint16),
    }


def _landsat_properties(spacecraft: str) -> Callable[[Scene], dict[str, Any]]:
    def props(scene: Scene) -> dict[str, Any]:
        c = scene.footprint.centroid
        path = int((180 - c.x) / 360 * 233) % 233 + 1
        row = int((90 - c.y) / 180 * 248) + 1
        return {
            "system:index": f"{'LC08' if spacecraft == 'LANDSAT_8' else 'LC09'}_{path:03d}{row:03d}_"
            f"{scene.time:%Y%m%d}",
            "SPACECRAFT_ID": spacecraft,
            "WRS_PATH": path,
            "WRS_ROW": row,
            "DATE_ACQUIRED": f"{scene.time:%Y-%m-%d}",
            "CLOUD_COVER_LAND": scene.cloud,
            "SUN_ELEVATION": 60.0 - 30 * abs(c.y) / 90,
            "PROCESSING_LEVEL": "L2SP",
        }

    return props


def _s2_values(scene: Scene, lon: np.ndarray, lat: np.ndarray, _: dict[str, Any]) -> dict[str, Any]:
    refl, cloudy, shadow = _surface(scene, lon, lat)
    water = landcover(lon, lat) < 0.12
    cover = landcover(lon, lat)

    def dn(r: np.ndarray) -> np.ndarray:  # harmonized: reflectance = DN / 10000
        return np.clip(np.round(r * 10000), 1, 65535).astype(np.uint16)

    # SCL: 3 cloud shadow, 4 vegetation, 5 bare, 6 water, 8 cloud medium, 9 cloud high probability
    scl = np.where(water, 6, np.where(cover > 0.4, 4, 5))
    scl = np.where(shadow, 3, np.where(cloudy, 9, scl)).astype(np.uint8)
    qa60 = (cloudy.astype(np.uint16) << 10).astype(np.uint16)
    return {
        "B1": dn(refl["coastal"]),
        "B2": dn(refl["blue"]),
        "B3": dn(refl["green"]),
        "B4": dn(refl["red"]),
        "B5": dn(refl["re1"]),
        "B6": dn(refl["re2"]),
        "B7": dn(refl["re3"]),
        "B8": dn(refl["nir"]),
        "B8A": dn(refl["nir_narrow"]),
        "B9": dn(refl["vapour"]),
        "B11": dn(refl["swir1"]),
        "B12": dn(refl["swir2"]),
        "SCL": scl,
        "QA60": qa60,
        "MSK_CLDPRB": np.where(cloudy, 90, 0).astype(np.uint8),
    }


def _s2_properties(scene: Scene) -> dict[str, Any]:
    c = scene.footprint.centroid
    zone = int((c.x + 180) / 6) + 1
    band = "CDEFGHJKLMNPQRSTUVWXX"[max(0, min(20, int((c.y + 80) / 8)))]
    column = "ABCDEFGHJKLMNPQRSTUVWXYZ"[int(abs(c.x) * 7) % 24]
    row = "ABCDEFGHJKLMNPQRSTUV"[int(abs(c.y) * 9) % 20]
    tile = f"{zone:02d}{band}{column}{row}"
    spacecraft = "Sentinel-2A" if int(scene.time.toordinal()) % 2 else "Sentinel-2B"
    return {
        "system:index": f"{scene.time:%Y%m%dT%H%M%S}_{scene.time:%Y%m%dT%H%M%S}_T{tile}",
        "MGRS_TILE": tile,
        "SPACECRAFT_NAME": spacecraft,
        "SENSING_ORBIT_NUMBER": int(scene.seed * 143) + 1,
    }


def _modis_values(scene: Scene, lon: np.ndarray, lat: np.ndarray, _: dict[str, Any]) -> dict[str, Any]:
    cover = landcover(lon, lat)
    ndvi = ndvi_field(lon, lat, _doy(scene.time) + 8, cover)
    refl = reflectances(ndvi, _doy(scene.time))
    evi = 2.5 * (refl["nir"] - refl["red"]) / (refl["nir"] + 6 * refl["red"] - 7.5 * refl["blue"] + 1)
    scaled = {
        k: np.clip(np.round(v * 10000), -2000, 10000).astype(np.int16) for k, v in {"NDVI": ndvi, "EVI": evi}.items()
    }
    return {
        **scaled,
        "DetailedQA": np.zeros(lon.shape, dtype=np.uint16),
        "sur_refl_b01": np.round(refl["red"] * 10000).astype(np.int16),
        "sur_refl_b02": np.round(refl["nir"] * 10000).astype(np.int16),
        "sur_refl_b03": np.round(refl["blue"] * 10000).astype(np.int16),
        "sur_refl_b07": np.round(refl["swir2"] * 10000).astype(np.int16),
        "ViewZenith": np.full(lon.shape, 1500, dtype=np.int16),
        "SolarZenith": np.round((30 + 0.5 * np.abs(lat)) * 100).astype(np.int16),
        "RelativeAzimuth": np.full(lon.shape, 3000, dtype=np.int16),
        "DayOfYear": np.full(lon.shape, scene.time.timetuple().tm_yday + 8, dtype=np.int16),
        "SummaryQA": np.zeros(lon.shape, dtype=np.int8),
    }


def _modis_properties(scene: Scene) -> dict[str, Any]:
    return {"system:index": f"{scene.time:%Y_%m_%d}"}


_L8_BANDS = (
    *((f"SR_B{i}", "uint16") for i in range(1, 8)),
    ("ST_B10", "uint16"),
    ("QA_PIXEL", "uint16"),
    ("QA_RADSAT", "uint16"),
)
_S2_BANDS = (
    *((b, "uint16") for b in ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12")),
    ("SCL", "uint8"),
    ("QA60", "uint16"),
    ("MSK_CLDPRB", "uint8"),
)
_MODIS_BANDS = (
    ("NDVI", "int16"),
    ("EVI", "int16"),
    ("DetailedQA", "uint16"),
    ("sur_refl_b01", "int16"),
    ("sur_refl_b02", "int16"),
    ("sur_refl_b03", "int16"),
    ("sur_refl_b07", "int16"),
    ("ViewZenith", "int16"),
    ("SolarZenith", "int16"),
    ("RelativeAzimuth", "int16"),
    ("DayOfYear", "int16"),
    ("SummaryQA", "int8"),
)

DATASETS: dict[str, Dataset] = {
    d.id: d
    for d in (
        Dataset(
            "LANDSAT/LC08/C02/T1_L2",
            "USGS Landsat 8 Level 2, Collection 2, Tier 1",
            _L8_BANDS,
            dt.datetime(2013, 3, 18, 10, 30, tzinfo=_UTC),
            None,
            16.0,
            0.0,
            1.5,
            1.7,
            _landsat_values,
            _landsat_properties("LANDSAT_8"),
            "CLOUD_COVER",
        ),
        Dataset(
            "LANDSAT/LC09/C02/T1_L2",
            "USGS Landsat 9 Level 2, Collection 2, Tier 1",
            _L8_BANDS,
            dt.datetime(2021, 10, 31, 10, 30, tzinfo=_UTC),
            None,
            16.0,
            8.0,
            1.5,
            1.7,
            _landsat_values,
            _landsat_properties("LANDSAT_9"),
            "CLOUD_COVER",
        ),
        Dataset(
            "COPERNICUS/S2_SR_HARMONIZED",
            "Harmonized Sentinel-2 MSI: MultiSpectral Instrument, Level-2A",
            _S2_BANDS,
            dt.datetime(2017, 3, 28, 10, 20, tzinfo=_UTC),
            None,
            5.0,
            0.0,
            1.0,
            1.0,
            _s2_values,
            _s2_properties,
            "CLOUDY_PIXEL_PERCENTAGE",
        ),
        Dataset(
            "MODIS/061/MOD13Q1",
            "MOD13Q1.061 Terra Vegetation Indices 16-Day Global 250m",
            _MODIS_BANDS,
            dt.datetime(2000, 2, 18, tzinfo=_UTC),
            None,
            16.0,
            0.0,
            0.0,
            0.0,
            _modis_values,
            _modis_properties,
            yearly=True,
        ),
    )
}

#: single images of the catalogue
IMAGES = {"USGS/SRTMGL1_003": "NASA SRTM Digital Elevation 30m"}


class Catalogue:
    """The catalogue as the evaluator sees it: ``has`` and ``load``."""

    def has(self, asset_id: str) -> bool:
        return _public_id(asset_id) in DATASETS or _public_id(asset_id) in IMAGES

    def load(self, asset_id: str, *, image: bool) -> Any:
        key = _public_id(asset_id)
        if key in IMAGES:
            if not image:
                raise EvaluationError(f"ImageCollection.load: '{asset_id}' is an Image, not an ImageCollection.")
            return Image(
                (Band("elevation", memo(lambda lon, lat: np.round(elevation(lon, lat)).astype(np.int16)), "int16"),),
                properties=(("system:index", key.rsplit("/", 1)[-1]),),
            )
        if image:
            raise EvaluationError(f"Image.load: '{asset_id}' is an ImageCollection, not an Image.")
        return ImageCollection(source=DATASETS[key])

    def describe(self) -> list[dict[str, Any]]:
        """What the catalogue holds (for the docs and ``/_emulator/catalogue``)."""
        out = [
            {
                "id": d.id,
                "title": d.title,
                "type": "IMAGE_COLLECTION",
                "bands": [b for b, _ in d.bands],
                "start": d.start.date().isoformat(),
                "revisit_days": d.revisit_days,
                "cloud_property": d.cloud_property,
            }
            for d in DATASETS.values()
        ]
        out += [{"id": i, "title": t, "type": "IMAGE", "bands": ["elevation"]} for i, t in IMAGES.items()]
        return out


def _public_id(asset_id: str) -> str:
    return asset_id.removeprefix("projects/earthengine-public/assets/")


#: scenes whose pixels the computation running in this thread read (each export has its thread)
_READS = threading.local()


@contextlib.contextmanager
def counting_reads() -> Iterator[Callable[[], int]]:
    """Count the catalogue scenes this thread reads inside the block: yields a function that
    returns the count so far (a scene read again, by another chain or window, counts once)."""
    keys: set[Any] = set()
    _READS.keys = keys
    try:
        yield lambda: len(keys)
    finally:
        _READS.keys = None
