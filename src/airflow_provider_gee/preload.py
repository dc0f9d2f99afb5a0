"""The modules this provider's tasks import, imported once per Airflow worker instead of per task.

Airflow 3 runs every task in a process forked from its executor's worker (a LocalExecutor worker,
which is forked from the scheduler, or a Celery pool process): the task inherits what the worker
has imported and imports the rest itself, on every task start. Ours import the Google provider's
base hook (google-api-core, grpc, aiohttp, gcloud-aio-auth and the Secret Manager client come with
it), the Drive and Cloud Storage clients and ``ee``: about 0.7 CPU-s at every export and harvest
start, most of what a task run costs on a small machine (docs/performance.md). Imported in the
worker, they cost that once.

Every Airflow process imports ``airflow_local_settings`` at start (from ``$AIRFLOW_HOME/config``
or the Python path), so two lines there preload them for any executor that forks its tasks
(``docker/airflow_local_settings.py`` is the recommended deployment's)::

    from airflow_provider_gee.preload import preload_task_modules

    preload_task_modules()

It does not help executors that start each task in a fresh interpreter (KubernetesExecutor pods,
``execute_tasks_new_python_interpreter``); it costs each Airflow process the imports once (about
a second) and their memory, shared with the forked tasks copy-on-write.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable

log = logging.getLogger(__name__)

#: what an export, a harvest (Drive or Cloud Storage) and their triggers import when they run
TASK_MODULES: tuple[str, ...] = (
    "ee",
    "googleapiclient.discovery",
    "googleapiclient.http",
    "airflow.providers.google.common.hooks.base_google",
    "airflow.providers.google.suite.hooks.drive",
    "airflow.providers.google.cloud.hooks.gcs",
    "airflow_provider_gee.hooks.earth_engine",
    "airflow_provider_gee.hooks.drive",
    "airflow_provider_gee.triggers.task",
    "airflow_provider_gee.operators.export",
    "airflow_provider_gee.operators.harvest",
)


def preload_task_modules(modules: Iterable[str] = TASK_MODULES) -> list[str]:
    """Import ``modules`` into this process so that the task processes it forks inherit them.

    A module that fails to import is logged and skipped: this runs as every Airflow process
    starts, and a missing optional package must not stop the scheduler; a task that needs it
    fails with the import's own error.

    :param modules: dotted module names; by default what this provider's tasks import.
    :return: the modules imported.
    """
    imported = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as error:  # any import failure: report it, keep the process starting
            log.warning("airflow-provider-gee: not preloading %s: %s", name, error)
        else:
            imported.append(name)
    return imported
