"""What an export returns: its result for the harvest, its links and its lineage."""

from __future__ import annotations

from typing import Any

from airflow.sdk import Context

from airflow_provider_gee.links.drive import DriveFolderLink, drive_folder_url
from airflow_provider_gee.links.earth_engine import EarthEngineAssetLink, EarthEngineTaskLink, asset_url, task_url
from airflow_provider_gee.operators.export.configuration import ExportConfiguration
from airflow_provider_gee.utils.operations import export_result


class ExportResults(ExportConfiguration):
    """The result, links and lineage of an export."""

    def _persist_links(self, context: Context, operation: str) -> None:
        EarthEngineTaskLink.persist(context, url=task_url(self.hook.api_url, self.hook.uses_google, operation))
        self._persist_destination_links(context)

    def _persist_destination_links(self, context: Context, drive_folder_id: str | None = None) -> None:
        """The Drive folder and asset links; the one that does not apply is set empty (no link)."""
        drive = self.destination == "drive"
        DriveFolderLink.persist(context, url=drive_folder_url(self.folder, drive_folder_id) if drive else None)
        asset = self.hook.asset_name(self._fill(self.asset_id) or "") if self.destination == "asset" else None
        EarthEngineAssetLink.persist(context, url=asset_url(asset) if asset else None)

    def _result(self, context: Context, op: dict[str, Any]) -> dict[str, Any]:
        """The XCom result: what harvest and merge operators need, nothing more."""
        result = export_result(self._result_base(context, op.get("description")), op)
        # a resumed half sets them again (the folder now by id); only the task link is read back
        self._persist_destination_links(context, result.get("drive_folder_id"))
        return self._with_lineage(result)

    def _with_lineage(self, result: dict[str, Any]) -> dict[str, Any]:
        """Keep what the export read and wrote for OpenLineage; return ``result``."""
        from airflow_provider_gee.utils.lineage import export_output_uris
        from airflow_provider_gee.utils.outlets import ee_asset_uri

        self._lineage = ([ee_asset_uri(n) for n in result.get("inputs", [])], export_output_uris(result))
        return result

    def _result_base(self, context: Context, description: str | None = None) -> dict[str, Any]:
        """The operator's part of the result (:func:`~airflow_provider_gee.utils.operations.export_result`)."""
        description = description or self.task_description(context)
        base: dict[str, Any] = {
            "tile_id": self.tile_id,
            "description": description,
            "export_type": self.export_type,
            "destination": self.destination,
        }
        if self._file_format() and self.destination != "asset":  # the harvest takes its extensions only
            base["file_format"] = self._file_format()
        if self._inputs:
            base["inputs"] = self._inputs
        if self.destination == "asset":
            base["asset_id"] = self.hook.asset_name(self._fill(self.asset_id) or "")
        else:
            base["file_name_prefix"] = self._fill(self.file_name_prefix) or description
            if self.destination == "drive":
                base["folder"] = self.folder
            else:
                base["bucket"] = self.bucket
        return base
