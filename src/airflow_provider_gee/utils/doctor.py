"""The first-run doctor: in one screen, whether a connection, a pool and a deployment can run EE
exports, and for each check that fails, the fix.

``gee-doctor [--conn-id ID] [--pool NAME] [--destination drive|gcs|asset] [--bucket B]`` runs
every check (exit 0 when none fails, 1 otherwise); :class:`~airflow_provider_gee.operators.doctor.GeeDoctorOperator`
runs the same checks as the first task of a DAG.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from google.auth.transport.requests import Request

from airflow_provider_gee.exceptions import EarthEngineError, GeeError

#: scopes under which EE can write a Drive export as the caller (read-only ones cannot)
DRIVE_SCOPES = frozenset({"https://www.googleapis.com/auth/drive", "https://www.googleapis.com/auth/drive.file"})
#: scopes with which EE accepts exports (its REST reference; earthengine.readonly cannot export)
EE_SCOPES = frozenset({"https://www.googleapis.com/auth/earthengine", "https://www.googleapis.com/auth/cloud-platform"})
LEVELS = ("ok", "warn", "fail", "skip")


@dataclass(frozen=True)
class Finding:
    """One check's result.

    :param check: what was checked (one word or two).
    :param level: ``ok``, ``warn`` (works, but not as well as it could), ``fail`` or ``skip``.
    :param detail: what was found.
    :param fix: for ``warn`` and ``fail``: what to do.
    """

    check: str
    level: str
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _short(scope: str) -> str:
    return scope.removeprefix("https://www.googleapis.com/auth/")


class Doctor:
    """The checks, in the order a first run meets them. Each adds findings; a check that cannot run
    because an earlier one failed is skipped, named as such.

    :param conn_id: the Airflow connection the exports use.
    :param pool: the pool the exports run in (``None``: not checked).
    :param destination: ``drive``, ``gcs`` or ``asset`` (``None``: neither storage is checked).
    :param bucket: the Cloud Storage bucket of ``gcs`` exports.
    :param prefix: where in the bucket the exports write (``exports/``): the probe object is
        created and deleted there, where a grant limited to a prefix applies.
    :param impersonation_chain: service account(s) the exports impersonate.
    :param metadata_db: whether the Airflow metadata database can be read here (pools and the
        triggerer's heartbeat): yes for the command, no in a task (Airflow 3 gives tasks none).
    """

    def __init__(
        self,
        conn_id: str,
        *,
        pool: str | None = None,
        destination: str | None = None,
        bucket: str | None = None,
        prefix: str = "",
        impersonation_chain: str | Sequence[str] | None = None,
        metadata_db: bool = True,
    ) -> None:
        self.conn_id, self.pool, self.destination, self.bucket = conn_id, pool, destination, bucket
        self.prefix = prefix
        self.impersonation_chain = impersonation_chain
        self.metadata_db = metadata_db
        self.findings: list[Finding] = []
        self._scopes: set[str] = set()
        self._email = ""
        self._config: dict[str, Any] | None = None

    def add(self, check: str, level: str, detail: str, fix: str = "") -> None:
        self.findings.append(Finding(check, level, detail, fix))

    @property
    def failed(self) -> bool:
        return any(f.level == "fail" for f in self.findings)

    def run(self) -> list[Finding]:
        """Every check; returns the findings."""
        from airflow_provider_gee.hooks.earth_engine import EarthEngineHook

        hook = EarthEngineHook(gcp_conn_id=self.conn_id, impersonation_chain=self.impersonation_chain)
        if self._identity(hook):
            self._project(hook)
        else:
            self.add("project", "skip", "not checked: the identity did not resolve")
        self._pool()
        if self.destination == "drive":
            self._drive()
        elif self.destination == "gcs":
            self._gcs()
        self._triggerer()
        return self.findings

    # ------------------------------------------------------------------ identity

    def _identity(self, hook: Any) -> bool:
        try:
            kind = hook.identity_kind
            credentials = hook.get_credentials()
            if not credentials.valid:
                credentials.refresh(Request())
        except Exception as exc:  # any failure to get a token is this check's finding
            self.add(
                "identity",
                "fail",
                f"connection {self.conn_id!r} gives no access token: {exc}",
                "give the connection a person's EE credentials (extra 'ee_credentials': the file `earthengine "
                "authenticate` writes), a service-account key (keyfile_dict), or run the workers where Application "
                "Default Credentials resolve (the metadata server, workload identity, GOOGLE_APPLICATION_CREDENTIALS).",
            )
            return False
        try:
            info = hook.token_info()
        except Exception as exc:  # some tokens (federated ones used directly) cannot be introspected
            self.add("identity", "ok", kind)
            self.add("scopes", "warn", f"tokeninfo could not read the token's scopes: {exc}",
                     "nothing to do if the project checks pass; a Drive export needs the Drive scope.")  # fmt: skip
            return True
        self._email = str(info.get("email") or "")
        self._scopes = set(str(info.get("scope") or "").split())
        self.add("identity", "ok", f"{kind}" + (f": {self._email}" if self._email else ""))
        scopes = ", ".join(sorted(_short(s) for s in self._scopes)) or "none"
        if not self._scopes & EE_SCOPES:
            self.add(
                "scopes",
                "fail",
                scopes,
                "EE needs the earthengine or cloud-platform scope: set the connection's 'scope' extra, or grant the "
                "VM/workload the cloud-platform scope.",
            )
        elif self.destination == "drive" and not self._scopes & DRIVE_SCOPES:
            self.add(
                "scopes",
                "fail",
                f"{scopes}: no Drive scope, so EE cannot write Drive exports as this identity",
                "export to Cloud Storage (destination='gcs'), or use a person's EE credentials (extra "
                "'ee_credentials'), or `gcloud auth application-default login --client-id-file=<your OAuth client> "
                "--scopes=...,https://www.googleapis.com/auth/drive` (gcloud's own client is not granted Drive).",
            )
        else:
            self.add("scopes", "ok", scopes)
        return True

    # ------------------------------------------------------------------ project

    def _project(self, hook: Any) -> None:
        try:
            project = hook.project
        except GeeError as exc:
            self.add("project", "fail", str(exc), "set the connection's 'project' extra")
            return
        try:
            self._config = hook.project_config()
        except EarthEngineError as exc:
            message = str(exc)
            if "serviceusage" in message or "USER_PROJECT_DENIED" in message:
                self.add(
                    "quota project",
                    "fail",
                    f"EE refuses {project!r} as quota project (X-Goog-User-Project): {message}",
                    f"grant {self._email or 'the identity'} roles/serviceusage.serviceUsageConsumer on {project!r}, "
                    "or set the connection's 'project' to a project it may use.",
                )
            elif "not registered" in message:
                self._unregistered(project, message)
            else:
                self.add(
                    "project",
                    "fail",
                    f"EE refused projects.getConfig for {project!r}: {message}",
                    "check the project id and that the identity has an Earth Engine role on it.",
                )
            return
        self.add("quota project", "ok", f"EE accepts {project!r} as quota project")
        state = str(self._config.get("registrationState") or "")
        if state == "NOT_REGISTERED" or not state:
            self._unregistered(project, f"registrationState {state or 'missing'}")
        else:
            use = "commercial" if state == "REGISTERED_COMMERCIALLY" else "noncommercial"
            self.add("registration", "ok", f"{project!r} is registered for Earth Engine ({use} use)")

    def _unregistered(self, project: str, detail: str) -> None:
        self.add(
            "registration",
            "fail",
            f"{project!r} is not registered for Earth Engine ({detail})",
            f"register it: https://console.cloud.google.com/earth-engine/configuration?project={project}",
        )

    # ------------------------------------------------------------------ pool

    def _pool(self) -> None:
        if self.pool is None:
            return
        limit = int((self._config or {}).get("maxConcurrentExports") or 0)
        plan = int((self._config or {}).get("planMaxConcurrentExports") or 0)
        if not self.metadata_db:
            self.add("pool", "skip", f"pool {self.pool!r} not read: a task has no metadata database (run gee-doctor)")
            return
        from airflow.models.pool import Pool

        found = Pool.get_pool(self.pool)
        create = f'airflow pools set {self.pool} {limit or 10} "EE tasks in flight" --include-deferred'
        if found is None:
            self.add("pool", "fail", f"pool {self.pool!r} does not exist: exports in it would never run", create)
            return
        slots, deferred = int(found.slots), bool(found.include_deferred)
        if not deferred:
            self.add(
                "pool",
                "fail",
                f"pool {self.pool!r} ({slots} slots) does not count deferred tasks: waiting EE tasks hold no slot, so "
                "more EE tasks than its slots would be in flight",
                create.replace(f" {limit or 10} ", f" {slots} "),
            )
            return
        where = f"pool {self.pool!r}: {slots} slots, deferred tasks counted"
        if not limit:
            self.add("pool", "ok", f"{where} (EE's concurrent export limit not known)")
        elif slots < limit:
            self.add(
                "pool",
                "fail",
                f"{where}, fewer than EE's {limit} concurrent exports for this project: {limit - slots} of EE's "
                "slots stay idle",
                f'airflow pools set {self.pool} {limit} "EE tasks in flight" --include-deferred (fewer only when '
                "other deployments share the project's limit)",
            )
        elif slots > limit:
            self.add(
                "pool",
                "warn",
                f"{where}, more than EE's {limit} concurrent exports (plan allows {plan or limit}): the rest wait in "
                "EE's queue, holding slots",
                f'airflow pools set {self.pool} {limit} "EE tasks in flight" --include-deferred, or raise the '
                "project's maxConcurrentExports up to its plan's",
            )
        else:
            self.add("pool", "ok", f"{where}, as many as EE's concurrent exports ({limit})")

    # ------------------------------------------------------------------ storage

    def _drive(self) -> None:
        from googleapiclient.errors import HttpError

        from airflow_provider_gee.hooks.drive import DriveHook

        try:
            quota = DriveHook(gcp_conn_id=self.conn_id, impersonation_chain=self.impersonation_chain).storage_quota()
        except HttpError as exc:
            self.add(
                "drive",
                "fail",
                f"Drive refused: {exc.reason}",
                "give the connection the Drive scope (see scopes), or export to Cloud Storage.",
            )
            return
        limit, usage = quota.get("limit"), int(quota.get("usage") or 0)
        if limit == 0:
            self.add(
                "drive",
                "fail",
                "no Drive storage (limit 0 bytes): service accounts have none since 2025, and EE writes Drive exports "
                "as the caller",
                "export to Cloud Storage (destination='gcs', bucket=...), or use a person's EE credentials "
                "(extra 'ee_credentials').",
            )
        elif limit is not None and usage >= int(limit):
            self.add(
                "drive",
                "fail",
                f"Drive is full ({usage} of {limit} bytes)",
                "free Drive storage (harvest or delete old exports), or export to Cloud Storage.",
            )
        else:
            free = (
                "unlimited"
                if limit is None
                else f"{(int(limit) - usage) / 1e9:.1f} GB free of {int(limit) / 1e9:.1f} GB"
            )
            self.add("drive", "ok", f"Drive storage: {free}")

    def _gcs(self) -> None:
        if not self.bucket:
            self.add("bucket", "fail", "destination gcs without a bucket", "pass --bucket (the exports' bucket).")
            return
        from airflow_provider_gee.hooks.gcs import GcsHook

        hook = GcsHook(gcp_conn_id=self.conn_id, impersonation_chain=self.impersonation_chain)
        name = f"{self.prefix}gee-doctor-probe-{uuid.uuid4().hex}.txt"
        try:
            hook.upload(self.bucket, name, data=b"gee-doctor probe: safe to delete\n")
        except Exception as exc:  # Google's own message is the finding
            self.add(
                "bucket",
                "fail",
                f"cannot create an object in gs://{self.bucket}: {exc}",
                "grant the identity roles/storage.objectAdmin on the bucket (EE writes and the harvest deletes).",
            )
            return
        try:
            hook.delete(self.bucket, name)
        except Exception as exc:
            self.add(
                "bucket",
                "fail",
                f"created gs://{self.bucket}/{name} but cannot delete it: {exc}",
                "grant the identity roles/storage.objectAdmin (the harvest deletes what it verified).",
            )
            return
        self.add("bucket", "ok", f"gs://{self.bucket}: an object created and deleted")

    # ------------------------------------------------------------------ triggerer

    def _triggerer(self) -> None:
        if not self.metadata_db:
            return  # the operator checks it by deferring
        from airflow.jobs.job import most_recent_job

        job = most_recent_job("TriggererJob")
        if job is not None and job.is_alive():
            self.add("triggerer", "ok", f"alive on {job.hostname} (heartbeat {job.latest_heartbeat:%H:%M:%S})")
            return
        seen = f"last heartbeat {job.latest_heartbeat:%Y-%m-%d %H:%M:%S}" if job is not None else "never started"
        self.add(
            "triggerer",
            "fail",
            f"no triggerer alive ({seen}): deferrable exports would wait for ever",
            "start one: airflow triggerer (or deploy the triggerer component).",
        )


def render(conn_id: str, findings: Iterable[Finding], write: Callable[[str], None] = print) -> None:
    """The findings as one screen: a line each, the fix under a warning or failure."""
    write(f"gee-doctor: connection {conn_id!r}")
    for f in findings:
        write(f"  {f.level.upper():<5} {f.check:<14} {f.detail}")
        if f.fix and f.level in ("warn", "fail"):
            write(f"  {'':<5} {'':<14} fix: {f.fix}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gee-doctor", description=__doc__.splitlines()[0])
    parser.add_argument("--conn-id", default="google_cloud_default", help="the exports' Airflow connection")
    parser.add_argument("--pool", default=None, help="the pool the exports run in (default: not checked)")
    parser.add_argument(
        "--destination",
        choices=("drive", "gcs", "asset"),
        default=None,
        help="check Drive storage (drive) or create and delete an object in --bucket (gcs)",
    )
    parser.add_argument("--bucket", default=None, help="the Cloud Storage bucket of gcs exports")
    parser.add_argument("--prefix", default="", help="where in --bucket the exports write: the probe goes there")
    args = parser.parse_args(argv)
    doctor = Doctor(args.conn_id, pool=args.pool, destination=args.destination, bucket=args.bucket, prefix=args.prefix)
    render(args.conn_id, doctor.run())
    return 1 if doctor.failed else 0


if __name__ == "__main__":
    sys.exit(main())
