"""Extra links: the operator sets their URLs, Airflow's task runner writes them (get_link)."""

from __future__ import annotations

from airflow.sdk import BaseOperator

from airflow_provider_gee.links.drive import DriveFolderLink
from airflow_provider_gee.links.earth_engine import EarthEngineAssetLink, EarthEngineTaskLink


def test_get_link_answers_from_the_operator_without_reading_xcom():
    op = BaseOperator(task_id="export")
    EarthEngineTaskLink.persist({"task": op}, url="https://code.earthengine.google.com/tasks?project=p")
    DriveFolderLink.persist({"task": op}, url=None)
    # ti_key=None: a read from XCom would fail, so these answers come from the operator alone
    assert EarthEngineTaskLink().get_link(op, ti_key=None) == "https://code.earthengine.google.com/tasks?project=p"
    assert DriveFolderLink().get_link(op, ti_key=None) == ""


def test_links_are_shown_from_their_own_xcom_key():
    # Airflow 3's api-server reads a link from the XCom under xcom_key, which finalize() writes
    assert [link().xcom_key for link in (EarthEngineTaskLink, DriveFolderLink, EarthEngineAssetLink)] == [
        "gee_task_link",
        "gee_drive_folder_link",
        "gee_asset_link",
    ]


def test_each_operator_keeps_its_own_urls():
    first, second = BaseOperator(task_id="a"), BaseOperator(task_id="b")
    EarthEngineAssetLink.persist({"task": first}, url="https://code.earthengine.google.com/?asset=projects/p/assets/x")
    EarthEngineAssetLink.persist({"task": second}, url=None)
    assert EarthEngineAssetLink().get_link(first, ti_key=None).endswith("assets/x")
    assert EarthEngineAssetLink().get_link(second, ti_key=None) == ""
