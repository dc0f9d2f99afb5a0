"""Run a DAG written as text with ``dag.test()`` (in-process scheduler, triggers run inline)."""

from __future__ import annotations

import importlib.util
import os
import textwrap
import uuid
from pathlib import Path
from typing import Any


def write_dag(source: str, dag_id: str) -> Path:
    folder = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    path = folder / f"{dag_id}.py"
    path.write_text(textwrap.dedent(source).replace("DAG_ID", dag_id))
    return path


def run_dag(source: str, dag_id: str | None = None) -> tuple[Any, str]:
    """Write the DAG file, import it, run ``dag.test()``; return (dag run, dag_id)."""
    dag_id = dag_id or f"t_{uuid.uuid4().hex[:10]}"
    path = write_dag(source, dag_id)
    spec = importlib.util.spec_from_file_location(f"dagmod_{dag_id}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag.test(), dag_id


def task_instances(dag_id: str) -> list[Any]:
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter(TaskInstance.dag_id == dag_id).all()
        session.expunge_all()
        return tis


def xcom_values(dag_id: str, task_id: str) -> list[Any]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(XComModel)
            .filter(XComModel.dag_id == dag_id, XComModel.task_id == task_id, XComModel.key == "return_value")
            .order_by(XComModel.map_index)
            .all()
        )
        return [XComModel.deserialize_value(r) for r in rows]
