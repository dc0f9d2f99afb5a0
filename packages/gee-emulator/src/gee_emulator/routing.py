"""The route table every service's routes register in, and Google's answers they share: the
error body of Google's APIs, the canonical status names, paged listings, and the refusals of a
quota project, a registration or a token's scopes (their sources are named in docs/emulator.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gee_emulator.server import RequestHandler

Handler = Callable[["RequestHandler", re.Match[str]], None]
#: the routes of every service, in the order they were defined (the first match answers)
ROUTES: list[tuple[str, re.Pattern[str], str, Handler]] = []


def route(method: str, pattern: str, name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        ROUTES.append((method, re.compile(f"^{pattern}$"), name, fn))
        return fn

    return register


def error_body(code: int, message: str, status: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status}}


def status_name(code: int) -> str:
    return {
        429: "RESOURCE_EXHAUSTED",
        500: "INTERNAL",
        502: "UNAVAILABLE",
        503: "UNAVAILABLE",
        504: "DEADLINE_EXCEEDED",
        400: "INVALID_ARGUMENT",
        403: "PERMISSION_DENIED",
        404: "NOT_FOUND",
    }.get(code, "UNKNOWN")


def send_page(h: RequestHandler, items: list[Any], field: str, default: int, maximum: int, **extra: Any) -> None:
    """Answer one page of a listing (``pageSize``/``pageToken``; ``nextPageToken`` while more)."""
    size = min(int(h.query.get("pageSize") or default), maximum) or default
    start = int(h.query.get("pageToken") or 0)
    out: dict[str, Any] = {**extra, field: items[start : start + size]}
    if start + size < len(items):
        out["nextPageToken"] = str(start + size)
    h.send_json(200, out)


#: Google's answer to a person's credentials (ADC) that name no quota project
QUOTA_PROJECT_REQUIRED = (
    "Your application is authenticating by using local Application Default Credentials. The "
    "earthengine.googleapis.com API requires a quota project, which is not set by default. To learn how to set "
    "your quota project, see https://cloud.google.com/docs/authentication/adc-troubleshooting/user-creds ."
)


#: Google's answer to a quota project the caller lacks ``serviceusage.services.use`` on
USER_PROJECT_DENIED = (
    "Caller does not have required permission to use project {project}. Grant the caller the "
    "roles/serviceusage.serviceUsageConsumer role, or a custom role with the serviceusage.services.use "
    "permission, by visiting https://console.developers.google.com/iam-admin/iam/project?project={project} "
    "and then retry. Propagation of the new permission may take a few minutes."
)
#: EE's answer for a project that is not registered to use it
NOT_REGISTERED = (
    "Project {project} is not registered to use Earth Engine. Visit "
    "https://console.cloud.google.com/earth-engine/configuration?project={project} to register your project."
)


def scope_error() -> dict[str, Any]:
    """Google's answer to a token without the API's scope (ErrorInfo ``ACCESS_TOKEN_SCOPE_INSUFFICIENT``)."""
    body = error_body(403, "Request had insufficient authentication scopes.", "PERMISSION_DENIED")
    body["error"]["details"] = [
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
         "domain": "googleapis.com"}
    ]  # fmt: skip
    body["error"]["errors"] = [
        {"message": "Insufficient Permission", "domain": "global", "reason": "insufficientPermissions"}
    ]
    return body
