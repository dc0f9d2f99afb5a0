"""``gee-emulator``: run the local Earth Engine + Drive emulator."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading

from gee_emulator.ee_state import ERROR_STATUS_DEFAULTS, OPERATIONS_ORDERS, REQUEST_ID_REUSE, EmulatorConfig
from gee_emulator.server import EmulatorServer


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gee-emulator",
        description="Local Earth Engine (REST v1), Google Drive (v3) and OAuth token server for offline runs.",
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (loopback only; default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port; 0 picks a free one (default)")
    p.add_argument("--project", default="gee-emulator", help="the EE project of the generated key")
    p.add_argument(
        "--ee-concurrency",
        type=int,
        default=2,
        metavar="K",
        help="batch tasks EE runs at once; the rest stay PENDING (default 2)",
    )
    p.add_argument(
        "--task-seconds",
        type=float,
        default=1.0,
        metavar="D",
        help="duration of one export in seconds, fractions allowed (default 1)",
    )
    p.add_argument(
        "--drive-quota-bytes",
        type=int,
        default=None,
        metavar="Q",
        help="Drive storage limit; exports that would exceed it fail (default unlimited)",
    )
    p.add_argument(
        "--file-dimensions",
        type=int,
        default=4096,
        metavar="PX",
        help="GeoTIFF exports wider or taller than this are split into parts (default 4096)",
    )
    p.add_argument(
        "--service-account-drive-quota-bytes",
        type=int,
        default=0,
        metavar="Q",
        help="Drive storage of service accounts (default 0: none, as on Google since 2025, so their Drive "
        "exports fail; a number models an older account that still has some)",
    )
    p.add_argument(
        "--write-user-credentials",
        default=None,
        metavar="FILE",
        help="write an authorized_user credentials file for a person (--user-email) to FILE (mode 600); point "
        "GOOGLE_APPLICATION_CREDENTIALS at it and use a connection without a key (--print-connection --user)",
    )
    p.add_argument(
        "--oauth-client",
        choices=("gcloud", "own"),
        default="gcloud",
        help="the OAuth client of --write-user-credentials: gcloud's own (Cloud scopes only, no Drive, as Google "
        "grants it since 2025-06-23; default) or a client of the person's own (gcloud --client-id-file: Drive too)",
    )
    p.add_argument(
        "--write-ee-credentials",
        default=None,
        metavar="FILE",
        help="write the file `earthengine authenticate` writes (EE's client and scopes, Drive included, and the "
        "project) for the person (--user-email) to FILE (mode 600); with --user the printed connection names it "
        "in its extra 'ee_credentials'",
    )
    p.add_argument("--user-email", default="analyst@example.com", help="the person of the credentials written")
    p.add_argument(
        "--registration-state",
        choices=("REGISTERED_NOT_COMMERCIALLY", "REGISTERED_COMMERCIALLY", "NOT_REGISTERED"),
        default="REGISTERED_NOT_COMMERCIALLY",
        help="the project's EE registration (projects.getConfig); NOT_REGISTERED refuses EE calls as EE does",
    )
    p.add_argument(
        "--plan-max-concurrent-exports",
        type=int,
        default=None,
        metavar="N",
        help="planMaxConcurrentExports of projects.getConfig (default: --ee-concurrency)",
    )
    p.add_argument(
        "--quota-project",
        action="append",
        default=[],
        metavar="P",
        help="a further project callers may name in X-Goog-User-Project (others: USER_PROJECT_DENIED)",
    )
    p.add_argument(
        "--user", action="store_true", help="--print-connection/--connection-file: a connection without a key (ADC)"
    )
    p.add_argument(
        "--drive-listing-lag-seconds",
        type=float,
        default=0.0,
        metavar="S",
        help="new Drive files show in listings only after up to S seconds each (default 0: at once)",
    )
    p.add_argument(
        "--operation-ttl-seconds",
        type=float,
        default=None,
        metavar="S",
        help="forget finished operations S seconds after they ended: gone from listings, GET answers 404, "
        "their requestId is free again (EE lists recent tasks only; default: keep them)",
    )
    p.add_argument(
        "--operations-order",
        choices=OPERATIONS_ORDERS,
        default="newest",
        help="order of operations.list, which EE does not document (default newest first)",
    )
    p.add_argument(
        "--max-queued",
        type=int,
        default=None,
        metavar="N",
        help="refuse exports while N tasks of the project are PENDING (EE: 3000; default no limit)",
    )
    p.add_argument(
        "--strict-evaluation",
        action="store_true",
        help="refuse EE algorithms the emulator does not evaluate exactly, instead of synthesizing a result",
    )
    p.add_argument(
        "--max-pixels-per-task",
        type=int,
        default=None,
        help="an image export with more output pixels fails: 'Output of image computation is too large'",
    )
    p.add_argument(
        "--memory-limit-pixels",
        type=int,
        default=None,
        help="an image export holding more than this many pixels x bands x images read fails: "
        "'User memory limit exceeded.'",
    )
    p.add_argument(
        "--task-timeout-seconds",
        type=float,
        default=None,
        help="an image export computing for more EECU-seconds (pixels x bands x images read x 1e-6) fails: "
        "'Computation timed out.'",
    )
    p.add_argument(
        "--request-id-reuse",
        choices=REQUEST_ID_REUSE,
        default="reject",
        help="a requestId repeated with a different body: reject it (default) or return the first operation",
    )
    p.add_argument(
        "--error-status",
        action="append",
        default=[],
        metavar="NAME=CODE",
        help="HTTP status of an answer Google does not document: "
        + ", ".join(f"{k} (default {v})" for k, v in ERROR_STATUS_DEFAULTS.items()),
    )
    p.add_argument("--gcs-url", default=None, help="Cloud Storage (emulator) endpoint for exports to Cloud Storage")
    p.add_argument("--state-dir", default=None, help="keep operations, assets and Drive files here across restarts")
    p.add_argument(
        "--require-auth",
        action="store_true",
        help="require a bearer token from /token, signed by a trusted key, on every API route",
    )
    p.add_argument(
        "--admin-token-file",
        default=None,
        metavar="FILE",
        help="with --require-auth, write the token the admin routes (/_emulator/...) demand to FILE (mode 600)",
    )
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback --host (only inside an isolated container network)",
    )
    p.add_argument(
        "--public-url",
        default=None,
        help="URL clients reach the emulator at (e.g. http://gee-emulator:8085 in docker compose)",
    )
    p.add_argument(
        "--print-connection",
        action="store_true",
        help="print an Airflow connection (JSON) for this emulator after the 'listening' line",
    )
    p.add_argument(
        "--connection-file",
        default=None,
        help='also write {"google_cloud_default": <connection>} to this file (the JSON format of '
        "Airflow's LocalFilesystemBackend connections file; mode 600: it holds the private key)",
    )
    return p


def _write_json(path: str, data: object, mode: int) -> None:
    """Write ``data`` to a new file (or over an old one) with exactly ``mode``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    os.fchmod(fd, mode)  # an old file keeps its mode through O_CREAT: set it
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    error_status: dict[str, int] = {}
    for item in args.error_status:
        name, _, code = item.partition("=")
        if name not in ERROR_STATUS_DEFAULTS or not code.isdigit():
            parser.error(f"--error-status {item!r}: use NAME=CODE with NAME one of {sorted(ERROR_STATUS_DEFAULTS)}")
        error_status[name] = int(code)
    config = EmulatorConfig(
        project=args.project,
        ee_concurrency=args.ee_concurrency,
        task_seconds=args.task_seconds,
        drive_quota_bytes=args.drive_quota_bytes,
        drive_listing_lag_seconds=args.drive_listing_lag_seconds,
        service_account_drive_quota_bytes=args.service_account_drive_quota_bytes,
        file_dimensions=args.file_dimensions,
        gcs_url=args.gcs_url,
        operation_ttl_seconds=args.operation_ttl_seconds,
        operations_order=args.operations_order,
        max_queued=args.max_queued,
        strict_evaluation=args.strict_evaluation,
        max_pixels_per_task=args.max_pixels_per_task,
        memory_limit_pixels=args.memory_limit_pixels,
        task_timeout_seconds=args.task_timeout_seconds,
        request_id_reuse=args.request_id_reuse,
        error_status=error_status,
        registration_state=args.registration_state,
        plan_max_concurrent_exports=args.plan_max_concurrent_exports,
        quota_projects=tuple(args.quota_project),
    )
    try:
        server = EmulatorServer(
            config,
            host=args.host,
            port=args.port,
            state_dir=args.state_dir,
            require_auth=args.require_auth,
            allow_remote=args.allow_remote,
            public_url=args.public_url,
        )
    except (ValueError, OSError) as exc:
        print(f"gee-emulator: {exc}", file=sys.stderr)
        return 2
    # handlers before the "listening" line: a supervisor may stop us as soon as it reads it
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    ee_file = os.path.abspath(args.write_ee_credentials) if args.write_ee_credentials else None
    connection = server.connection(user=args.user, ee_credentials=ee_file if args.user else None)
    if args.connection_file:
        # it holds the generated private key: readable by its owner only
        _write_json(args.connection_file, {"google_cloud_default": connection}, 0o600)
    if args.admin_token_file:
        _write_json(args.admin_token_file, {"admin_token": server.admin_token}, 0o600)
    if args.write_user_credentials:  # a credential: readable by its owner only
        person = server.user_credentials(args.user_email, client=args.oauth_client)
        _write_json(args.write_user_credentials, person, 0o600)
    if ee_file:
        _write_json(ee_file, server.ee_credentials(args.user_email), 0o600)
    print(f"listening on {server.url}", flush=True)
    if args.print_connection:
        print(json.dumps(connection), flush=True)
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
