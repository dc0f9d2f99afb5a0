"""The Airflow Assets our operators declare: URIs by Airflow's rules, defaults only for
destinations known when the DAG is parsed, and the DAG's own outlets always win."""

from __future__ import annotations

import pytest
from airflow.sdk import Asset

from airflow_provider_gee.operators.assets import AssetMergeOperator
from airflow_provider_gee.operators.stitch import MosaicOperator, TableStitchOperator
from airflow_provider_gee.utils.outlets import add_event_extras, destination_uri, ee_asset_uri


def test_uris_follow_airflows_rules(tmp_path):
    assert destination_uri(str(tmp_path / "out")) == f"file://{tmp_path}/out"
    assert destination_uri("gs://bucket/mosaics/") == "gs://bucket/mosaics"
    assert ee_asset_uri("projects/p1/assets/merged/points") == "x-earthengine://p1/merged/points"
    with pytest.raises(ValueError, match="not a full EE asset name"):
        ee_asset_uri("merged/points")
    # Airflow accepts them as they are (an x- scheme is the owner's)
    assert Asset(uri="x-earthengine://p1/merged/points").uri == "x-earthengine://p1/merged/points"


def test_static_destinations_are_default_outlets_and_templates_are_not(tmp_path):
    mosaic = MosaicOperator(task_id="m", harvest_results=[], destination=str(tmp_path / "mosaic"))
    assert [a.uri for a in mosaic.outlets] == [f"file://{tmp_path}/mosaic"]
    templated = MosaicOperator(task_id="t", harvest_results=[], destination="/data/{{ run_id }}")
    assert templated.outlets == []
    table = TableStitchOperator(task_id="s", harvest_results=[], output_path="gs://b/points.parquet")
    assert [a.uri for a in table.outlets] == ["gs://b/points.parquet"]
    merge = AssetMergeOperator(task_id="a", destination_asset="projects/p1/assets/all", sources=["x"])
    assert [a.uri for a in merge.outlets] == ["x-earthengine://p1/all"]
    relative = AssetMergeOperator(task_id="r", destination_asset="all", sources=["x"])
    assert relative.outlets == []  # its project is the connection's: known when the task runs
    mine = Asset(name="my_mosaic")
    own = MosaicOperator(task_id="o", harvest_results=[], destination=str(tmp_path), outlets=[mine])
    assert own.outlets == [mine]


def test_event_extras_go_to_every_asset_outlet():
    class Event:
        def __init__(self) -> None:
            self.extra: dict = {}

    events: dict = {}

    class Events(dict):
        def __missing__(self, key):
            events[key] = Event()
            return events[key]

    a, b = Asset(name="a"), Asset(name="b")
    add_event_extras({"outlet_events": Events()}, [a, b], {"tiles": 4})
    assert {k.name: v.extra for k, v in events.items()} == {"a": {"tiles": 4}, "b": {"tiles": 4}}
    # an event is shown to whoever may see the asset: a URL's secrets are not in it
    add_event_extras({"outlet_events": Events()}, [a], {"cog": "s3://AKIAX:s3cr3t@bucket/m.tif", "files": 2})
    assert events[a].extra == {"cog": "s3://AKIAX:***@bucket/m.tif", "files": 2}


def test_secrets_in_a_destination_url_are_redacted_where_it_is_shown():
    from airflow_provider_gee.utils.lineage import operator_lineage
    from airflow_provider_gee.utils.outlets import destination_uri, redact_url

    assert (
        redact_url("s3://AKIAEXAMPLE:s3cr3t@bucket/tiles?X-Amz-Signature=abc#k")
        == "s3://AKIAEXAMPLE:***@bucket/tiles?***#***"
    )
    assert redact_url("https://ghp_token@example.com/data") == "https://***@example.com/data"
    assert redact_url("gs://my_gcs_conn@bucket/tiles") == "gs://my_gcs_conn@bucket/tiles"  # an Airflow connection id
    assert redact_url("/data/gee/tiles") == "/data/gee/tiles"
    assert redact_url("gs://[bucket/x") == "gs://***"  # unparseable: nothing after the scheme
    assert destination_uri("gs://user:pw@bucket/out/?token=t") == "gs://user:***@bucket/out/?***"
    lineage = operator_lineage(["gs://bucket/in?key=k"], ["s3://AKIAEXAMPLE:s3cr3t@bucket/tiles?X-Amz-Signature=abc"])
    text = repr(lineage)
    assert "s3cr3t" not in text and "abc" not in text and "key=k" not in text
    assert lineage.outputs[0].namespace == "s3://AKIAEXAMPLE:***@bucket"
