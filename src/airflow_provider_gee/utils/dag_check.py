"""``gee-dag-check``: find what would make a DAG of this provider hang or overrun EE, before a run.

Airflow never schedules a task whose pool does not exist: the run just waits (the scheduler logs
"Tasks using non-existent pool ... will not be scheduled"; Airflow 3.3's dag-processor does not
report it). And a pool without ``include_deferred`` does not count deferred exports, so far more
EE tasks than its slots would be in flight. This check reads the DAGs and the deployment's pools
(from the metadata database, like ``airflow pools list``) and names each problem with its fix.

Run it where the ``airflow`` CLI works (CI, a scheduler container): ``gee-dag-check [dags_folder]``.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any

#: operators whose pool slot must stand for one EE task, deferred or not
DEFERRING_TASK_TYPES = frozenset({"GeeExportOperator", "AssetMergeOperator", "GeeTaskSensor"})
#: what in a name template makes it differ between runs: the run's token, or a Jinja expression
#: of the run's id, date or interval
RUN_SPECIFIC = re.compile(
    r"\{run_token\}|\{\{[^}]*\b(run_id|ds|ds_nodash|ts|ts_nodash|logical_date|data_interval_start"
    r"|data_interval_end)\b[^}]*\}\}"
)
#: the export's arguments that name things outside Airflow
NAME_ARGUMENTS = ("file_name_prefix", "asset_id", "description")


def _argument(task: Any, name: str, default: Any = None) -> Any:
    """An operator's argument, also of a mapped task (``.partial(...).expand(...)``)."""
    partial = getattr(task, "partial_kwargs", None)
    if isinstance(partial, dict):
        return partial.get(name, default)
    return getattr(task, name, default)


def naming_problems(dags: Iterable[Any]) -> list[str]:
    """Exports that give every run the same names while several runs can be in flight.

    With ``run_scoped_names=False`` an export's names are exactly as given: unless each one
    differs per run (a Jinja run field such as ``{{ run_id }}`` or ``{{ ds }}``, or
    ``{run_token}``), two runs in flight at once write, harvest and delete each other's outputs.
    """
    problems = []
    for dag in dags:
        if (getattr(dag, "max_active_runs", 1) or 1) <= 1:
            continue
        for task in dag.tasks:
            if task.task_type != "GeeExportOperator" or _argument(task, "run_scoped_names", True):
                continue
            shared = [
                name
                for name in NAME_ARGUMENTS
                if (value := _argument(task, name)) is not None and not RUN_SPECIFIC.search(str(value))
            ]
            if shared:  # the default description (and prefix) holds the run's period or run id
                what = ", ".join(shared)
                problems.append(
                    f"Task {task.task_id!r} of DAG {dag.dag_id!r} sets run_scoped_names=False and {what} "
                    f"hold(s) nothing run-specific, while the DAG allows {dag.max_active_runs} runs at once: two runs "
                    "in flight would write, harvest and delete each other's files. Fix: drop run_scoped_names=False, "
                    "put {{ run_id }} or {run_token} in the names, or set max_active_runs=1 on the DAG."
                )
    return problems


def pool_problems(dags: Iterable[Any], pools: Mapping[str, bool]) -> list[str]:
    """Problems with the pools the DAGs' tasks use.

    :param dags: DAG objects.
    :param pools: the deployment's pools: name -> ``include_deferred``.
    """
    problems = []
    for dag in dags:
        for task in dag.tasks:
            pool = task.pool
            where = f"Task {task.task_id!r} of DAG {dag.dag_id!r}"
            if pool not in pools:
                problems.append(
                    f"{where} uses pool {pool!r}, which does not exist: the task would never be scheduled. Create it: "
                    f'airflow pools set {pool} 10 "EE tasks in flight" --include-deferred'
                )
            elif task.task_type in DEFERRING_TASK_TYPES and not pools[pool]:
                problems.append(
                    f"{where} uses pool {pool!r}, which does not count deferred tasks, so waiting EE tasks hold no "
                    f"slot and more EE tasks than its slots can be in flight. Fix: airflow pools set {pool} <slots> "
                    '"EE tasks in flight" --include-deferred'
                )
    return problems


def deployment_pools() -> dict[str, bool]:
    """The pools of the configured metadata database: name -> include_deferred."""
    from airflow.models.pool import Pool

    return {str(p.pool): bool(p.include_deferred) for p in Pool.get_pools()}


def main(argv: list[str] | None = None) -> int:
    from airflow.configuration import conf

    try:
        from airflow.dag_processing.dagbag import DagBag  # Airflow 3.2+
    except ImportError:
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]  # Airflow 3.1

    parser = argparse.ArgumentParser(prog="gee-dag-check", description=__doc__.splitlines()[0])
    parser.add_argument("dags_folder", nargs="?", default=None, help="default: [core] dags_folder")
    args = parser.parse_args(argv)
    folder = args.dags_folder or conf.get("core", "dags_folder")
    bag = DagBag(dag_folder=folder)
    for path, error in bag.import_errors.items():
        print(f"{path}: does not import: {error.strip().splitlines()[-1]}")
    problems = pool_problems(bag.dags.values(), deployment_pools()) + naming_problems(bag.dags.values())
    for problem in problems:
        print(problem)
    if not problems and not bag.import_errors:
        print(
            f"OK: {len(bag.dags)} DAGs in {folder}; every pool they use exists and counts deferred EE tasks, and no "
            "export gives two runs in flight the same names."
        )
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
