"""gee-dag-check: exports that would give two runs in flight the same names."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_gee.operators.export import GeeExportOperator
from airflow_provider_gee.utils.dag_check import naming_problems

TILES = [{"tile_id": "r1c1", "geometry": {"type": "Point", "coordinates": [13.2, 52.4]}}]


def build(tile, context):  # never called: the check reads the DAG only
    raise AssertionError


def dag_with(max_active_runs: int, mapped: bool = True, **export_args) -> DAG:
    with DAG("d", schedule=None, start_date=pendulum.datetime(2024, 1, 1), max_active_runs=max_active_runs) as dag:
        if mapped:
            GeeExportOperator.partial(task_id="export", build=build, **export_args).expand(tile=TILES)
        else:
            GeeExportOperator(task_id="export", build=build, tile=TILES[0], **export_args)
    return dag


def test_fixed_names_without_run_scoping_are_reported_when_runs_can_overlap():
    for mapped in (True, False):
        (problem,) = naming_problems([dag_with(3, mapped, file_name_prefix="{tile_id}", run_scoped_names=False)])
        assert "'export'" in problem and "file_name_prefix" in problem and "max_active_runs=1" in problem


def test_run_scoped_run_templated_or_single_run_dags_pass():
    assert naming_problems([dag_with(3, file_name_prefix="{tile_id}")]) == []  # the default: scoped
    assert naming_problems([dag_with(3, file_name_prefix="{{ run_id }}_{tile_id}", run_scoped_names=False)]) == []
    assert naming_problems([dag_with(3, file_name_prefix="{tile_id}_{run_token}", run_scoped_names=False)]) == []
    assert naming_problems([dag_with(1, file_name_prefix="{tile_id}", run_scoped_names=False)]) == []


def test_words_that_merely_contain_ds_or_ts_are_not_run_specific():
    for prefix in ("exports_{tile_id}", "landsat_{tile_id}", "results/t_{tile_id}", "{{ dag_run.conf.x }}_{tile_id}"):
        assert naming_problems([dag_with(3, file_name_prefix=prefix, run_scoped_names=False)]), prefix
    assert naming_problems([dag_with(3, file_name_prefix="{{ ds_nodash }}_{tile_id}", run_scoped_names=False)]) == []
