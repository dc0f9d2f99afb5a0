"""Airflow local settings of the deployment we recommend: every Airflow process imports this file
as it starts (the image puts it in ``$AIRFLOW_HOME/config``; the tests' and the demo's Airflow
use it too). Add the two lines below to your own ``airflow_local_settings.py`` if you have one."""

from airflow_provider_gee.preload import preload_task_modules

# Tasks run in processes forked from the executor's workers: importing what our tasks import here,
# once, spares every export and harvest the imports (about 0.7 CPU-s per task start measured).
preload_task_modules()

__all__: list[str] = []  # nothing here is a cluster policy or a setting for Airflow to read
