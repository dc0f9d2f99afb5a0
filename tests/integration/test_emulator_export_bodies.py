"""The emulator holds export bodies to Google's rules (the EE REST reference's ExportImageRequest
and ExportTableRequest): unknown fields refused, ``priority`` in both JSON forms, workload tags
checked and reported by tag, requestIds per caller, TFRecord images refused; ``projects.getConfig``
served. The provider sends the workload tag and refuses TFRecord images before anything remote."""

from __future__ import annotations

import copy
import json

import ee
import pytest

from airflow_provider_gee.exceptions import EarthEngineError, GeeConfigurationError
from airflow_provider_gee.hooks.earth_engine import EarthEngineHook
from airflow_provider_gee.operators.export import GeeExportOperator
from airflow_provider_gee.utils.naming import default_workload_tag, workload_tag_problem
from tests.helpers import BERLIN, admin, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def hook(gee_conn: str) -> EarthEngineHook:
    h = EarthEngineHook(gcp_conn_id=gee_conn)
    h.initialize_ee()
    return h


def _body(request_id: str, **extra: object) -> dict:
    """An image export body as ``ee.batch`` builds it."""
    task = ee.batch.Export.image.toDrive(ee.Image.constant(1), description=request_id, folder="bodies",
                                         region=ee.Geometry.Rectangle(BERLIN), scale=1000)  # fmt: skip
    body = dict(task.config)
    body["expression"] = ee.serializer.encode(body["expression"], for_cloud_api=True)
    return {**body, "requestId": request_id, **extra}


def _post(hook: EarthEngineHook, body: dict) -> dict:
    return hook.request("POST", f"projects/{hook.project}/image:export", json=body)


def test_an_unknown_field_is_refused_as_google_refuses_it(hook, emulator):
    with pytest.raises(EarthEngineError, match=r'Invalid JSON payload received\. Unknown name "fileFormat"') as info:
        _post(hook, _body("unknown-field", fileFormat="GEO_TIFF"))  # belongs in fileExportOptions
    assert info.value.status_code == 400
    assert emulator.stats()["operations"] == 0


@pytest.mark.parametrize("priority", [150, {"value": 150}, "150"])
def test_priority_is_read_in_the_plain_and_the_wrapper_form(hook, priority):
    op = _post(hook, _body("prio", priority=priority))
    assert op["metadata"]["priority"] == 150


@pytest.mark.parametrize("priority", [10000, -1, "high"])
def test_a_bad_priority_is_refused_not_crashed_on(hook, priority):
    with pytest.raises(EarthEngineError) as info:
        _post(hook, _body("bad-prio", priority=priority))
    assert info.value.status_code == 400


def test_request_ids_belong_to_their_caller(hook, emulator, monkeypatch, tmp_path):
    """The REST reference: only one request "by the same user" with a given requestId starts an
    operation; another identity's request with the same id starts its own."""
    first = _post(hook, _body("shared-id"))
    assert _post(hook, _body("shared-id"))["name"] == first["name"]  # the same caller: the same task
    adc = tmp_path / "adc.json"
    adc.write_text(json.dumps(emulator.user_credentials("someone@example.com")))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
    monkeypatch.setenv("AIRFLOW_CONN_GEE_OTHER", json.dumps(emulator.connection(user=True)))
    other = EarthEngineHook(gcp_conn_id="gee_other")
    theirs = _post(other, _body("shared-id"))
    assert theirs["name"] != first["name"]
    assert emulator.ee.operations[theirs["name"].rsplit("/", 1)[1]].caller == "someone@example.com"


def test_a_snapshot_from_before_per_caller_request_ids_keeps_them_with_their_callers(tmp_path):
    """An emulator restarted on an older --state-dir: a retry of a task submitted before the upgrade
    still finds it by its requestId (else it would start a duplicate)."""
    from gee_emulator import EmulatorServer

    with EmulatorServer(state_dir=tmp_path) as emu:
        state = emu.ee.snapshot()
    op = {"id": "OLD1", "project": "p", "kind": "image", "body": {"requestId": "r1"}, "seq": 1,
          "caller": "analyst@example.com", "done": True, "error": None,
          "metadata": {"state": "SUCCEEDED", "description": "d", "createTime": "2026-01-01T00:00:00Z"}}  # fmt: skip
    state["operations"] = [op]
    state["request_ids"] = [["p", "r1", "OLD1"]]  # the old form: (project, requestId) -> operation
    (tmp_path / "state.json").write_text(json.dumps({"ee": state, "drive": {}}))
    with EmulatorServer(state_dir=tmp_path) as emu:
        assert emu.ee.request_ids == {("p", "analyst@example.com", "r1"): "OLD1"}


@pytest.mark.parametrize("tag", ["-leading", "trailing.", "has space", "x" * 64, "ümlaut"])
def test_a_bad_workload_tag_is_refused(hook, tag):
    with pytest.raises(EarthEngineError, match="Invalid workload tag") as info:
        _post(hook, _body("bad-tag", workloadTag=tag))
    assert info.value.status_code == 400
    assert workload_tag_problem(tag) is not None  # the provider's rule is EE's


def test_tfrecord_images_are_refused_by_the_emulator(hook):
    body = _body("tfrecord")
    body["fileExportOptions"] = {**body["fileExportOptions"], "fileFormat": "TF_RECORD_IMAGE"}
    with pytest.raises(EarthEngineError, match="does not model image exports as TF_RECORD_IMAGE"):
        _post(hook, body)


def test_project_config_through_the_official_client(hook, emulator):
    admin(emulator, "config", {"ee_concurrency": 4, "plan_max_concurrent_exports": 20})
    config = ee.data.getProjectConfig()
    assert config["registrationState"] == "REGISTERED_NOT_COMMERCIALLY"
    assert (config["maxConcurrentExports"], config["planMaxConcurrentExports"]) == (4, 20)
    assert hook.project_config() == config


def test_an_unregistered_project_is_refused_with_eess_message(hook, emulator):
    admin(emulator, "config", {"registration_state": "NOT_REGISTERED"})
    assert hook.project_config()["registrationState"] == "NOT_REGISTERED"
    with pytest.raises(EarthEngineError, match="is not registered to use Earth Engine"):
        list(hook.list_operations())


# ---------------------------------------------------------------------------- the provider's side


def _context(op: GeeExportOperator) -> dict:
    """What submit_job reads of a task instance's context (as tests/integration/test_many_runs.py)."""
    from types import SimpleNamespace

    ti = SimpleNamespace(dag_id=op.dag_id, task_id=op.task_id, run_id="manual__1", map_index=-1, try_number=1)
    return {"ti": ti, "task": op, "params": {}, "data_interval_start": None, "task_state_store": None}


def _operator(**kwargs: object) -> GeeExportOperator:
    args = dict(task_id="export_tile", build=lambda tile, context: ee.Image.constant(1), folder="tags",
                region=[13.2, 52.4, 13.3, 52.5], scale=1000, run_scoped_names=False)  # fmt: skip
    if "file_name_prefix" in kwargs:
        args["description"] = kwargs["file_name_prefix"]
    return GeeExportOperator(**{**args, **kwargs})


def test_every_export_carries_a_workload_tag_and_eecu_is_reported_by_it(gee_conn, emulator):
    from airflow.sdk import DAG

    with DAG("nightly_ndvi", schedule=None):
        default = _operator(gcp_conn_id=gee_conn, file_name_prefix="default")
        custom = _operator(task_id="custom", gcp_conn_id=gee_conn, file_name_prefix="custom", workload_tag="ndvi-2026")
        none = _operator(task_id="untagged", gcp_conn_id=gee_conn, file_name_prefix="none", workload_tag="")
    names = [op.submit_job(_context(op))["operation"] for op in (default, custom, none)]
    bodies = {op.body.get("description"): op.body for op in emulator.ee.operations.values()}
    tags = [emulator.ee.operations[n.rsplit("/", 1)[1]].body.get("workloadTag") for n in names]
    assert tags == ["nightly_ndvi.export_tile", "ndvi-2026", None], bodies
    wait_for(lambda: emulator.stats()["operations_by_state"].get("SUCCEEDED") == 3)
    usage = emulator.stats()["eecu_seconds_by_workload_tag"]
    assert set(usage) == {"nightly_ndvi.export_tile", "ndvi-2026", ""}
    assert all(seconds > 0 for seconds in usage.values())


def test_a_retry_sends_the_same_tag_so_ee_takes_it_as_the_same_request(gee_conn, emulator):
    op = _operator(gcp_conn_id=gee_conn, file_name_prefix="again", workload_tag="again")
    first = op.submit_job(_context(op))
    again = copy.copy(op)
    assert again.submit_job(_context(op))["operation"] == first["operation"]
    assert emulator.stats()["operations"] == 1


@pytest.mark.parametrize(
    ("dag_id", "task_id", "expected"),
    [
        ("nightly", "export", "nightly.export"),
        ("group dag", "tg.export", "group-dag.tg.export"),
        ("_private", "export_", "private.export"),
    ],
)
def test_default_tags_follow_ees_rule(dag_id, task_id, expected):
    assert default_workload_tag(dag_id, task_id) == expected


def test_long_default_tags_stay_apart_within_63_characters():
    a, b = default_workload_tag("d" * 80, "export_a"), default_workload_tag("d" * 80, "export_b")
    assert a != b and len(a) <= 63 and len(b) <= 63
    assert workload_tag_problem(a) is None and workload_tag_problem(b) is None


def test_the_operator_refuses_a_bad_tag_and_tfrecord_images_before_anything_remote(gee_conn, emulator):
    with pytest.raises(GeeConfigurationError, match="workload_tag='bad tag'"):
        _operator(gcp_conn_id=gee_conn, workload_tag="bad tag").validate()
    for fmt, options in (("TFRecord", None), (None, {"fileFormat": "TFRecord"})):
        op = _operator(gcp_conn_id=gee_conn, file_format=fmt, export_options=options)
        with pytest.raises(GeeConfigurationError, match="image exports are harvested and verified as GeoTIFF only"):
            op.validate()
    _operator(gcp_conn_id=gee_conn, export_type="table", file_format="TFRecord").validate()  # tables: allowed
    assert emulator.stats()["requests"] == {}
