"""Adaptive splitting: a tile EE refuses for its size is exported as quadrants, one after the
other in the same task instance and pool slot, with its plan kept in the task state store."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from airflow.sdk import Context

from airflow_provider_gee.exceptions import EarthEngineError, EarthEngineTooBig, EecuBudgetSpent, GeeConfigurationError
from airflow_provider_gee.links.earth_engine import EarthEngineTaskLink, task_url
from airflow_provider_gee.operators.export.resume import ExportResume
from airflow_provider_gee.operators.export.submission import TooBig
from airflow_provider_gee.triggers.events import OperationsEvent
from airflow_provider_gee.utils.operations import TERMINAL_STATES, export_result, summarize
from airflow_provider_gee.utils.task_state import TaskState

if TYPE_CHECKING:
    from airflow_provider_gee.utils.splitting import SplitPlan

#: task state store key of a split tile's plan (parts, their EE tasks, results)
SPLIT_KEY = "gee_split"


class ExportSplitting(ExportResume):
    """Exporting a tile too big for EE as parts, and going on with them after a retry."""

    def _lattice(self) -> tuple[float, float, float, float] | None:
        """The export's pixel lattice ``(x0, dx, y0, dy)`` in the CRS the tile is cut in (the grid's,
        lon/lat for other tiles), when the export pins it there; ``None`` otherwise (EE then keeps
        its own lattice for every part alike, and pixels on a cut are exported by both parts)."""
        if self.crs is None or self.tile is None:
            return None
        from pyproj import CRS

        grid = self.tile.get("grid")
        cut_crs = CRS.from_user_input(grid["crs"] if grid and self.tile.get("cell") else "EPSG:4326")
        try:
            if not CRS.from_user_input(self.crs).equals(cut_crs):
                return None
        except Exception:  # EE's own codes (SR-ORG:...) are not pyproj's: no lattice to snap to
            return None
        if self.crs_transform is not None:
            t = [float(v) for v in self.crs_transform]
            return t[2], t[0], t[5], t[4]
        if self.scale is not None and cut_crs.is_projected:  # scale is in metres
            return 0.0, float(self.scale), 0.0, float(self.scale)
        return None

    @contextlib.contextmanager
    def _as_part(self, part: dict[str, Any]) -> Iterator[None]:
        """Export ``part`` (a tile dict from the split) with this operator's settings: its id
        names the description, outputs and requestId, its geometry is the region."""
        whole = self.tile
        self.tile, self._part_suffix = part, part["tile_id"][len(str(whole["tile_id"])) :]  # type: ignore[index]
        try:
            yield
        finally:
            self.tile, self._part_suffix = whole, ""

    def _stored_plan(self, context: Context) -> SplitPlan | None:
        """The split plan kept for this export (same tile and arguments), else ``None``."""
        from airflow_provider_gee.utils.splitting import SplitPlan

        data = TaskState(context).get(SPLIT_KEY)
        if not data:
            return None
        if self._is_own(data, "split plan"):
            return SplitPlan(data)
        for part in data.get("parts", []):  # its parts' EE tasks would write beside this export's
            if part.get("state") != "SUCCEEDED":
                self._cancel_discarded(part.get("operation"))
        return None  # the export starts afresh; a new split replaces the plan

    def _save_plan(self, context: Context, plan: SplitPlan) -> None:
        TaskState(context).set(SPLIT_KEY, plan.data)

    def _split(self, context: Context, failure: dict[str, Any]) -> dict[str, Any]:
        """The tile was refused for its size: export its quadrants instead."""
        from airflow_provider_gee.utils.splitting import SplitPlan

        try:
            plan = SplitPlan.start(self.tile, failure, self._lattice())  # type: ignore[arg-type]
            plan.data["fingerprint"] = self._fingerprint()  # the plan is used again only by this export
        except GeeConfigurationError as exc:
            raise EarthEngineTooBig(
                f"{failure['error']} ({exc})", operation=failure["operation"] or "", state="FAILED"
            ) from None
        self.log.warning(
            "EE refused tile %s for its size (%s): exporting it as %d parts, one at a time (max_split_depth=%d)",
            self.tile_id, failure["error"], len(plan.parts), self.max_split_depth,
        )  # fmt: skip
        self._save_plan(context, plan)
        return self._run_split(context, plan)

    def _run_split(self, context: Context, plan: SplitPlan) -> dict[str, Any]:
        """Export the plan's parts one after the other, each to its end, then the tile's result.

        Deferrable, each wait defers (with the plan) and :meth:`_resume_split` comes back here;
        the plan is saved before every wait, so a killed task goes on from the part it was at.
        """
        from airflow_provider_gee.utils.splitting import part_tile

        self._inputs = self._inputs or plan.data.get("inputs")
        while (part := plan.current()) is not None:
            tile = part_tile(self.tile, part["tile_id"], self._lattice())  # type: ignore[arg-type]
            with self._as_part(tile):
                op = self._part_operation(context, part)
                if op is None:
                    try:
                        op = self._submit_part(context, plan, part)
                    except TooBig as exc:  # refused at submission, e.g. its request is too large
                        op = {"name": None, "state": "FAILED", "error": exc.failure["error"], "eecu_seconds": 0}
                if op["state"] not in TERMINAL_STATES:
                    op = self._wait_part(context, plan, op)
                self._record_part(context, plan, part, op, tile)
        return self._split_result(context, plan)

    def _resume_split(self, context: Context, event: OperationsEvent, split: dict[str, Any]) -> dict[str, Any]:
        """The trigger waited for a part: record how it ended and go on with the next."""
        from airflow_provider_gee.utils.splitting import SplitPlan, part_tile

        plan = self._stored_plan(context) or SplitPlan(split)
        part = plan.current()
        summaries = list(event["operations"].values())
        status = event["status"]
        if status == "timeout":
            if summaries:
                self.hook.cancel_operation(summaries[0]["name"])
            raise EarthEngineError(f"{event.get('message')}; the EE task was cancelled.")
        if status not in ("success", "failed") or not summaries:
            raise EarthEngineError(event.get("message") or f"Unexpected trigger event {event!r}")
        if part is not None and part["operation"] == summaries[0]["name"]:
            tile = part_tile(self.tile, part["tile_id"], self._lattice())  # type: ignore[arg-type]
            with self._as_part(tile):
                self._record_part(context, plan, part, summaries[0], tile)
        return self._run_split(context, plan)

    def _part_operation(self, context: Context, part: dict[str, Any]) -> dict[str, Any] | None:
        """The part's EE task as EE has it now; ``None`` when one is to be submitted."""
        if part["operation"] is None:
            return None
        try:
            return summarize(self.hook.get_operation(part["operation"]))
        except EarthEngineError as exc:
            if exc.status_code != 404:
                raise
        if self._outputs_exist(context):  # EE forgot it; its outputs show it succeeded
            return {
                "name": part["operation"], "state": "SUCCEEDED", "description": self.task_description(context),
                "create_time": self._not_before(context, part),
            }  # fmt: skip
        self.log.warning("EE no longer knows EE task %s of part %s: submitting again", part["operation"], self.tile_id)
        part.update(operation=None, generation=part["generation"] + 1)
        return None

    def _submit_part(self, context: Context, plan: SplitPlan, part: dict[str, Any]) -> dict[str, Any]:
        """Submit the part (budgets first), keep its EE task in the plan, and return it."""
        whole = plan.data["tile_id"]
        if self.max_tile_eecu_seconds is not None and plan.eecu_seconds() >= self.max_tile_eecu_seconds:
            raise EecuBudgetSpent(
                f"EECU budget of tile {whole} spent: {plan.eecu_seconds():,.1f} of {self.max_tile_eecu_seconds:,.1f} "
                f"EECU-s used by its refused EE tasks and exported parts; not exporting part {self.tile_id}. "
                "Raise max_tile_eecu_seconds and clear the task, or use smaller tiles."
            )
        self._hold_for_left_behind(context)
        description = self.task_description(context)
        if self.max_eecu_seconds is not None:
            self._check_budget(context, description)
        submitted = self._start(context, description, part["generation"])
        part.update(
            operation=submitted["operation"], generation=submitted["generation"], state="PENDING",
            submitted_at=submitted["submitted_at"],
        )  # fmt: skip
        plan.data["inputs"] = self._inputs  # a retry that finds every part done still knows them (lineage)
        self._save_plan(context, plan)
        done = sum(p["state"] == "SUCCEEDED" for p in plan.parts)
        self.log.info("Part %s of tile %s (%d of %d done): EE task %s", self.tile_id, whole, done,
                      len(plan.parts), submitted["operation"])  # fmt: skip
        return self._operation  # type: ignore[return-value]  # _start keeps the submitted operation

    def _wait_part(self, context: Context, plan: SplitPlan, op: dict[str, Any]) -> dict[str, Any]:
        """Wait for the part's EE task: deferred (the plan comes back with the trigger's event), or here."""
        self._operation = op  # on_kill cancels it
        EarthEngineTaskLink.persist(context, url=task_url(self.hook.api_url, self.hook.uses_google, op["name"]))
        if self.deferrable:
            from airflow_provider_gee.triggers.task import GeeTaskTrigger

            self.defer(
                trigger=GeeTaskTrigger(
                    [op["name"]], gcp_conn_id=self.gcp_conn_id, impersonation_chain=self.impersonation_chain,
                    poll_interval=self.poll_interval, timeout=self.wait_timeout, cancel_on_kill=True,
                    event_extra={"split": plan.data, "inputs": self._inputs},
                ),
                method_name="execute_complete",
            )  # fmt: skip
        return self._poll(op["name"])

    def _record_part(
        self, context: Context, plan: SplitPlan, part: dict[str, Any], op: dict[str, Any], tile: dict[str, Any]
    ) -> None:
        """Keep how the part's EE task ended: its result; its quadrants if EE refused it for its
        size (up to ``max_split_depth``); otherwise fail, and the next try exports it again."""
        from airflow_provider_gee.utils.splitting import split_tile

        whole = plan.data["tile_id"]
        if op["state"] == "SUCCEEDED":
            result = export_result(self._result_base(context, op.get("description")), op)
            part.update(state="SUCCEEDED", result={**result, "bbox": tile["bbox"]})
            self.log.info("Part %s of tile %s SUCCEEDED (%s EECU-s)", self.tile_id, whole, op.get("eecu_seconds"))
        elif self._splittable(op.get("error")) and part["depth"] < self.max_split_depth:
            try:
                pieces = split_tile(tile, self._lattice())
            except GeeConfigurationError as exc:
                message = f"{op.get('error')} ({exc})"
                raise EarthEngineTooBig(message, operation=op.get("name") or "", state="FAILED") from None
            plan.replace(part, self._failure(op), pieces)
            self.log.warning("EE refused part %s for its size (%s): splitting it into %d parts",
                             self.tile_id, op.get("error"), len(pieces))  # fmt: skip
        else:
            too_big = self._splittable(op.get("error"))
            if not too_big:  # the next try exports the part again, as a new EE task
                part.update(operation=None, generation=part["generation"] + 1, state=None)
            self._save_plan(context, plan)
            note = (
                f" (part {self.tile_id} of tile {whole}, still too big after splitting {part['depth']} times: "
                "use smaller tiles or raise max_split_depth)"
            )
            raise self._task_failed(op, note=note if too_big else "")
        self._save_plan(context, plan)

    def _split_result(self, context: Context, plan: SplitPlan) -> dict[str, Any]:
        """The split tile's result: the tile's own fields, every part's result and the total cost."""
        from airflow_provider_gee.links.drive import drive_folder_id

        parts = [p["result"] for p in plan.parts]
        uris = [u for p in parts for u in p.get("destination_uris", [])]
        result = {
            **self._result_base(context),
            "operation": plan.failed[0].get("operation"),
            "state": "SUCCEEDED",
            "destination_uris": uris,
            "eecu_seconds": round(plan.eecu_seconds(), 6),
            "create_time": min((p.get("create_time") or "" for p in parts), default=None) or None,
            "split": {"reason": plan.data["reason"], "depth": plan.depth(), "refused": plan.failed},
            "parts": parts,
        }
        if result["destination"] == "drive":
            result["drive_folder_id"] = drive_folder_id(uris)
        self.log.info(
            "Tile %s exported in %d parts (split %d deep): %.1f EECU-s, %d EE task(s) refused for size included",
            self.tile_id, len(parts), plan.depth(), result["eecu_seconds"], len(plan.failed),
        )  # fmt: skip
        self._persist_destination_links(context, result.get("drive_folder_id"))
        return self._with_lineage(result)
