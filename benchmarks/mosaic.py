"""B6: peak memory of MosaicOperator building a Cloud Optimized GeoTIFF larger than 2 GB from tiles.

Writes 8 x 8 tiles of 4,096 x 4,096 uint16 pixels (noise, so nothing compresses: 2 GiB of pixels),
then in a fresh process each: (a) ``MosaicOperator`` with ``cog=True, compress="NONE"`` (VRT +
windowed staging GeoTIFF + GDAL's COG driver with overviews) and (b) the baseline, rasterio's own
chunked ``merge(..., dst_path=..., mem_limit=64)`` into a plain GeoTIFF (no overviews, not a COG).
Reports output bytes, seconds and peak RSS of each. Prints JSON, also written to
``benchmarks/results/mosaic.json``. Needs about 8 GB of free disk in the temp directory.

Run: ``.venv/bin/python benchmarks/mosaic.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
GRID, SIZE, PIXEL = 8, 4096, 10.0

CHILD = """
import json, resource, sys, time
from pathlib import Path
work, mode = Path(sys.argv[1]), sys.argv[2]
tiles = sorted(str(p) for p in (work / "tiles").glob("*.tif"))
t0 = time.monotonic()
if mode == "operator":
    from airflow_provider_gee.operators.stitch import MosaicOperator
    result = MosaicOperator(task_id="mosaic", harvest_results=tiles, destination=str(work / "out"), cog=True,
                            compress="NONE").execute({})
    out = Path(result["cog"])
else:
    from rasterio.merge import merge
    out = work / "baseline.tif"
    merge(tiles, dst_path=out, mem_limit=64, dst_kwds={"tiled": True, "blockxsize": 512, "blockysize": 512,
                                                       "BIGTIFF": "YES"})
print(json.dumps({"seconds": round(time.monotonic() - t0, 1), "bytes": out.stat().st_size,
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))
"""


def write_tiles(folder: Path) -> int:
    import rasterio
    from rasterio.transform import from_origin

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    total = 0
    for r in range(GRID):
        for c in range(GRID):
            origin = (4e6 + c * SIZE * PIXEL, 3e6 - r * SIZE * PIXEL)
            profile = {"driver": "GTiff", "width": SIZE, "height": SIZE, "count": 1, "dtype": "uint16",
                       "crs": "EPSG:3035", "nodata": 0, "tiled": True, "blockxsize": 512, "blockysize": 512,
                       "transform": from_origin(*origin, PIXEL, PIXEL)}  # fmt: skip
            path = folder / f"r{r:02d}c{c:02d}.tif"
            with rasterio.open(path, "w", **profile) as dst:
                for row in range(0, SIZE, 512):
                    dst.write(
                        rng.integers(1, 65535, (1, 512, SIZE), dtype="uint16"), window=((row, row + 512), (0, SIZE))
                    )
            total += path.stat().st_size
    return total


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="bench-mosaic-"))
    try:
        tile_bytes = write_tiles(work / "tiles")
        runs = {}
        for mode in ("operator", "baseline"):
            env = {**os.environ, "AIRFLOW_HOME": str(work / "airflow")}
            done = subprocess.run([sys.executable, "-c", CHILD, str(work), mode], capture_output=True, text=True,
                                  env=env, check=False)  # fmt: skip
            if done.returncode:
                print(done.stderr[-3000:], file=sys.stderr)
                return 1
            runs[mode] = json.loads(done.stdout.strip().splitlines()[-1])
        result = {
            "benchmark": "B6 mosaic memory",
            "tiles": GRID * GRID,
            "tile_pixels": f"{SIZE} x {SIZE} uint16",
            "input_bytes": tile_bytes,
            "mosaic_operator_cog": runs["operator"],
            "baseline_rasterio_merge_chunked_geotiff": runs["baseline"],
            "target": "COG > 2 GB with peak RSS < 500 MB",
        }
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "mosaic.json").write_text(json.dumps(result, indent=2))
        print(json.dumps(result, indent=2))
        ok = runs["operator"]["bytes"] > 2e9 and runs["operator"]["peak_rss_mb"] < 500
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
