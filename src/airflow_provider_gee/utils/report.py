"""Run reports: a manifest (JSON) of tiles, EE operations, files and checksums, and a tile status
map (PNG) of the tiles coloured by outcome over the region."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import geopandas as gpd
from shapely.geometry import shape

from airflow_provider_gee.utils.compact_tiles import expand_tiles
from airflow_provider_gee.utils.extras import require_extra
from airflow_provider_gee.utils.operations import as_export_result
from airflow_provider_gee.utils.storage import staging_dir

STATUS_COLOURS = {"harvested": "#2e7d32", "exported": "#9ccc65", "failed": "#c62828", "missing": "#bdbdbd"}


def build_manifest(
    tiles: Iterable[dict[str, Any]],
    exports: Iterable[dict[str, Any] | None],
    harvests: Iterable[dict[str, Any] | None],
    price_per_eecu_hour: float | None = None,
) -> dict[str, Any]:
    """One record per tile: its EE operation and state, what it cost (EECU-seconds, as EE reports
    them), whether EE refused it for its size and it was exported in parts (``split``), and the
    files harvested for it; the run's totals, and with ``price_per_eecu_hour`` (the rate of your
    Earth Engine plan) an estimate of what the run's compute cost. ``tiles`` may be compact."""
    by_tile_export = {e["tile_id"]: e for e in map(as_export_result, exports) if e}
    by_tile_files = {h["tile_id"]: h for h in harvests if h}
    records = []
    for tile in tiles:
        tid = tile["tile_id"]
        export, harvest = by_tile_export.get(tid), by_tile_files.get(tid)
        status = "harvested" if harvest else "exported" if export else "failed"
        records.append(
            {
                "tile_id": tid,
                "status": status,
                "bbox": tile["bbox"],
                "operation": export and export["operation"],
                "state": export and export["state"],
                "eecu_seconds": export and export.get("eecu_seconds"),
                "split": export and _split_record(export),
                "files": [
                    {k: f[k] for k in ("name", "path", "size", "md5", "source_id")}
                    for f in (harvest or {}).get("files", [])
                ],
            }
        )
    files = [f for r in records for f in r["files"]]
    eecu = round(sum(r["eecu_seconds"] or 0 for r in records), 6)
    cost: dict[str, Any] = {"eecu_seconds": eecu, "eecu_hours": round(eecu / 3600, 6)}
    if price_per_eecu_hour is not None:
        cost |= {"price_per_eecu_hour": price_per_eecu_hour, "estimate": round(eecu / 3600 * price_per_eecu_hour, 4)}
    return {
        "tiles": len(records),
        "cost": cost,
        "by_status": {
            s: sum(r["status"] == s for r in records) for s in STATUS_COLOURS if any(r["status"] == s for r in records)
        },
        "split_tiles": sum(bool(r["split"]) for r in records),
        "files": len(files),
        "bytes": sum(f["size"] for f in files),
        "records": records,
    }


def _split_record(export: dict[str, Any]) -> dict[str, Any] | None:
    """How a split tile was exported: EE's reason, the depth, and each part's id, bbox and cost."""
    if not export.get("parts"):
        return None
    split = export.get("split") or {}
    return {
        "reason": split.get("reason"),
        "depth": split.get("depth"),
        "refused_eecu_seconds": round(sum(float(f.get("eecu_seconds") or 0) for f in split.get("refused", [])), 6),
        "parts": [{k: p.get(k) for k in ("tile_id", "bbox", "operation", "eecu_seconds")} for p in export["parts"]],
    }


def write_report(manifest: dict[str, Any], tiles: Iterable[dict[str, Any]], out_dir: str | Path) -> dict[str, str]:
    """Write ``manifest.json``, ``tiles.png`` (tiles by outcome) and, when EE reported what the
    exports cost, ``tiles_cost.png`` (tiles by EECU-seconds) into ``out_dir``; return their paths.
    ``tiles`` may be compact."""
    require_extra("report", feature="The run report's tile map")
    tiles = expand_tiles(tiles)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # each file is written in a private staging directory, then moved over its name: a crash leaves
    # the previous report whole, and a symlink planted at a name is replaced, never written through
    with staging_dir(out) as stage:
        staged = _draw_report(manifest, tiles, stage)
        paths = {}
        for key, path in staged.items():
            os.replace(path, out / path.name)
            paths[key] = str(out / path.name)
    return paths


def _draw_report(manifest: dict[str, Any], tiles: list[dict[str, Any]], out: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    manifest_path = out / "manifest.json"
    manifest_path.write_text(json.dumps(manifest, indent=2))
    status = {r["tile_id"]: r["status"] for r in manifest["records"]}
    frame = gpd.GeoDataFrame(
        [{"tile_id": t["tile_id"], "status": status.get(t["tile_id"], "missing")} for t in tiles],
        geometry=[shape(t["geometry"]) for t in tiles],
        crs="EPSG:4326",
    )
    fig, ax = plt.subplots(figsize=(8, 8 * max(0.3, min(3.0, _aspect(frame)))))
    frame.plot(ax=ax, color=[STATUS_COLOURS[s] for s in frame["status"]], edgecolor="white", linewidth=0.5)
    _draw_parts(ax, manifest)
    for _, row in frame.iterrows():
        c = row.geometry.centroid
        ax.annotate(row["tile_id"], (c.x, c.y), ha="center", va="center", fontsize=4, color="white", rotation=30)
    counts = frame["status"].value_counts()
    ax.legend(
        handles=[Patch(color=STATUS_COLOURS[s], label=f"{s} ({counts[s]})") for s in STATUS_COLOURS if s in counts],
        loc="upper left", bbox_to_anchor=(1.01, 1),
    )  # fmt: skip
    eecu = (manifest.get("cost") or {}).get("eecu_seconds")
    spent = f", {eecu:,.1f} EECU-s" if eecu is not None else ""
    ax.set_title(f"{len(frame)} tiles: {manifest['files']} files, {manifest['bytes']:,} bytes harvested{spent}")
    ax.tick_params(axis="x", labelrotation=45)
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    png_path = out / "tiles.png"
    fig.savefig(png_path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    paths = {"manifest": manifest_path, "map": png_path}
    cost = {r["tile_id"]: r.get("eecu_seconds") for r in manifest["records"]}
    if any(cost.values()):
        frame["eecu_seconds"] = [cost.get(t) or 0.0 for t in frame["tile_id"]]
        fig, ax = plt.subplots(figsize=(8, 8 * max(0.3, min(3.0, _aspect(frame)))))
        frame.plot(ax=ax, column="eecu_seconds", cmap="viridis", edgecolor="white", linewidth=0.5, legend=True,
                   legend_kwds={"label": "EECU-seconds", "shrink": 0.6})  # fmt: skip
        _draw_parts(ax, manifest)
        ax.set_title(f"{len(frame)} tiles: {sum(frame['eecu_seconds']):,.1f} EECU-s")
        ax.tick_params(axis="x", labelrotation=45)
        cost_path = out / "tiles_cost.png"
        fig.savefig(cost_path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        paths["cost_map"] = cost_path
    return paths


def _draw_parts(ax: Any, manifest: dict[str, Any]) -> None:
    """Outline the parts of split tiles (dashed), so the map shows which tiles EE refused whole."""
    from matplotlib.patches import Rectangle

    for record in manifest["records"]:
        for part in (record.get("split") or {}).get("parts", []):
            if part.get("bbox"):
                w, s, e, n = part["bbox"]
                ax.add_patch(Rectangle((w, s), e - w, n - s, fill=False, edgecolor="black", linewidth=0.6,
                                       linestyle="--"))  # fmt: skip


def _aspect(frame: gpd.GeoDataFrame) -> float:
    minx, miny, maxx, maxy = frame.total_bounds
    return (maxy - miny) / max(maxx - minx, 1e-9)
