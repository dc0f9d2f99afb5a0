"""An export's result is assembled in one place, for the operator and for the trigger that ends a
successful export in the triggerer, and reads back the same when Airflow hands it over as JSON."""

from __future__ import annotations

import json

from airflow_provider_gee.utils.operations import as_export_result, export_result

OPERATION = {
    "name": "projects/p/operations/OP1",
    "state": "SUCCEEDED",
    "description": "dag.export.r1c2.20240101T0000",
    "destination_uris": ["https://drive.google.com/#folders/F123"],
    "eecu_seconds": 12.5,
    "create_time": "2024-01-01T00:00:00Z",
}


def test_the_result_completes_the_operators_part_with_the_operation():
    base = {"tile_id": "r1c2", "description": "dag.export.r1c2.20240101T0000", "export_type": "image",
            "destination": "drive", "file_name_prefix": "r1c2", "folder": "exports"}  # fmt: skip
    result = export_result(base, OPERATION)
    assert result == {
        **base, "operation": "projects/p/operations/OP1", "state": "SUCCEEDED",
        "destination_uris": OPERATION["destination_uris"], "eecu_seconds": 12.5,
        "create_time": "2024-01-01T00:00:00Z", "drive_folder_id": "F123",
    }  # fmt: skip
    gcs = export_result({**base, "destination": "gcs", "bucket": "b"}, {**OPERATION, "destination_uris": []})
    assert "drive_folder_id" not in gcs and gcs["bucket"] == "b"


def test_a_result_handed_over_as_json_text_reads_as_the_dict():
    result = export_result({"tile_id": "r1c2", "destination": "gcs"}, OPERATION)
    assert as_export_result(json.dumps(result)) == result
    assert as_export_result(result) is result
    assert as_export_result(None) is None
