"""GeeExportOperator: one EE export per task instance, waited for in the same task instance.

Submitting and waiting in ONE task instance that defers keeps one slot of the ``gee_tasks`` pool
(created with ``include_deferred``) for the whole life of one EE task: the pool is the notebook's
old ``maxTasks``. A separate export task and sensor would free the slot in between.

Retries never duplicate an EE task: the ``requestId`` is derived from the task instance and a
request generation, and EE starts at most one operation per ``requestId``. On Airflow 3.3+ the
operation (with its generation) is kept in the task state store through ``ResumableJobMixin``;
before 3.3 (no store) a retry looks the task instance's operations up in EE's listing instead
(see :meth:`.resume.ExportResume._execute_without_state_store`). Either way a retry re-attaches
to a running operation, returns a SUCCEEDED one without submitting, and submits a new one (next
generation) only after FAILED/CANCELLED.

A tile that EE refuses for its size (:data:`~airflow_provider_gee.utils.splitting.SIZE_ERRORS`) is
exported as quadrants instead, one after the other in the same task instance and pool slot; the
split plan (which parts, their EE tasks) is kept in the task state store next to the operation, so
a retried or resumed task goes on with the part it was at.

The operator is a package along its seams, each layer building on the one before:
:mod:`.configuration` (arguments, checks, names), :mod:`.results` (result, links, lineage),
:mod:`.submission` (requestId generations, the checks before submitting), :mod:`.resume` (what a
retry finds, waiting), :mod:`.splitting` (tiles too big for EE) and :mod:`.operator`
(:class:`GeeExportOperator`, Airflow's entry points). Import from here: the modules are not an API.
"""

from __future__ import annotations

from airflow_provider_gee.operators.export.operator import GeeExportOperator
from airflow_provider_gee.operators.export.splitting import SPLIT_KEY

# sanitize_description, request_id and MAX_DESCRIPTION live in utils.naming (imported from here before)
from airflow_provider_gee.utils.naming import MAX_DESCRIPTION, request_id, sanitize_description

__all__ = ["MAX_DESCRIPTION", "SPLIT_KEY", "GeeExportOperator", "request_id", "sanitize_description"]
