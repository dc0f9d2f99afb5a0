"""Optional features fail at once, naming the extra that installs them."""

from __future__ import annotations

import pytest

from airflow_provider_gee.exceptions import GeeConfigurationError
from airflow_provider_gee.operators.stitch import MosaicOperator
from airflow_provider_gee.utils.extras import EXTRAS, require_extra


def test_a_missing_extra_is_named_with_the_install_line():
    with pytest.raises(GeeConfigurationError) as info:
        require_extra("stitch", "no_such_module_for_gee", feature="MosaicOperator")
    message = str(info.value)
    assert "MosaicOperator needs no_such_module_for_gee" in message
    assert "pip install 'airflow-provider-gee[stitch]'" in message


def test_installed_extras_pass():
    for extra in EXTRAS:  # the dev environment installs every extra
        require_extra(extra, feature="test")


def test_mosaic_checks_its_extra_before_reading_anything(monkeypatch, tmp_path):
    import airflow_provider_gee.utils.extras as extras

    monkeypatch.setattr(extras, "find_spec", lambda name: None)  # as on a worker without [stitch]
    op = MosaicOperator(task_id="mosaic", harvest_results=[str(tmp_path / "missing.tif")], destination=str(tmp_path))
    with pytest.raises(GeeConfigurationError, match=r"airflow-provider-gee\[stitch\]"):
        op.execute({})
