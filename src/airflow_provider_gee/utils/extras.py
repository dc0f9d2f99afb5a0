"""Optional features and the extras that install them.

A worker that only exports and harvests installs neither GDAL (rasterio) nor matplotlib. An
operator that needs one checks for it when it runs (not when the DAG is parsed, so schedulers and
other workers need not install it) and fails at once, naming the extra to install.
"""

from __future__ import annotations

from importlib.util import find_spec

from airflow_provider_gee.exceptions import GeeConfigurationError

#: feature extra -> the modules it installs
EXTRAS: dict[str, tuple[str, ...]] = {
    "stitch": ("rasterio", "pyarrow"),
    "report": ("matplotlib",),
}


def require_extra(extra: str, *modules: str, feature: str) -> None:
    """Fail with the install command unless ``modules`` (default: all of the extra's) import.

    :param extra: the extra's name, e.g. ``"stitch"``.
    :param modules: the modules the feature needs; default: every module of the extra.
    :param feature: what needs them, for the message (e.g. ``"MosaicOperator"``).
    """
    missing = [m for m in modules or EXTRAS[extra] if find_spec(m) is None]
    if missing:
        raise GeeConfigurationError(
            f"{feature} needs {', '.join(missing)}, which this Python environment lacks: install the "
            f"provider's '{extra}' extra on the workers that run it: pip install 'airflow-provider-gee[{extra}]'."
        )
