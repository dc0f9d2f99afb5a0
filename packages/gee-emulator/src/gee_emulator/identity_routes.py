"""Where identities get their tokens, on the emulator's port: the OAuth token endpoint, Google's ``tokeninfo``,
the Compute Engine metadata server (``GCE_METADATA_HOST`` / ``GCE_METADATA_IP``), the Security Token
Service exchange of an ``external_account`` file (workload identity federation) and IAM
Credentials' ``generateAccessToken`` (service-account impersonation).

Sources: google-auth's ``compute_engine/_metadata.py`` (paths, the ``Metadata-Flavor`` header, the
ping of the root), ``sts.py`` and ``external_account.py`` (the token-exchange form), ``iam.py`` and
``impersonated_credentials.py`` (``generateAccessToken``'s body and answer), and Google's OAuth
``tokeninfo`` reference. The metadata server and STS hand a token to whoever asks, as they do on
a VM: they are served only when the emulator does not ``require_auth``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from gee_emulator.auth import TOKEN_EXCHANGE, Identity
from gee_emulator.routing import route

if TYPE_CHECKING:
    from gee_emulator.server import RequestHandler

#: what google-auth asks the metadata server for, and the header both sides send
METADATA_FLAVOR = ("Metadata-Flavor", "Google")
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


def metadata_service_account(project: str) -> str:
    """The VM's default service account (Compute Engine's ``PROJECT_NUMBER-compute@...``)."""
    return f"{_project_number(project)}-compute@developer.gserviceaccount.com"


def _project_number(project: str) -> str:
    return str(int(hashlib.sha256(project.encode()).hexdigest()[:10], 16))


def _send_metadata(h: RequestHandler, status: int, payload: str | dict[str, Any]) -> None:
    """An answer of the metadata server: text or JSON, always with ``Metadata-Flavor: Google``
    (google-auth's ping and its requests check it)."""
    is_json = isinstance(payload, dict)
    body = (json.dumps(payload) if is_json else str(payload)).encode()
    h.send_response(status)
    h.send_header(*METADATA_FLAVOR)
    h.send_header("Content-Type", "application/json" if is_json else "application/text")
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


@route("GET", r"/", "metadata.ping")
def metadata_ping(h: RequestHandler, m: re.Match[str]) -> None:
    if h.emu.require_auth:
        h.send_json(404, {"error": "not found"})
        return
    _send_metadata(h, 200, "computeMetadata/\n")


@route("GET", r"/computeMetadata/v1/(?P<path>.*)", "metadata.get")
def metadata_get(h: RequestHandler, m: re.Match[str]) -> None:
    """``/computeMetadata/v1/...``: the project, the default service account, its scopes and token."""
    if h.emu.require_auth:
        h.send_json(404, {"error": "not found"})
        return
    if h.headers.get(METADATA_FLAVOR[0]) != METADATA_FLAVOR[1]:
        _send_metadata(h, 403, "Missing required header: Metadata-Flavor")
        return
    cfg = h.emu.config
    email = metadata_service_account(cfg.project)
    path = m["path"].rstrip("/")
    account = re.fullmatch(r"instance/service-accounts/(default|[^/]+)(?:/(email|scopes|token|aliases))?", path)
    if path == "project/project-id":
        _send_metadata(h, 200, cfg.project)
    elif path == "project/numeric-project-id":
        _send_metadata(h, 200, _project_number(cfg.project))
    elif path == "universe/universe-domain":
        _send_metadata(h, 200, "googleapis.com")
    elif account and account[1] in ("default", email):
        scopes = tuple(cfg.metadata_scopes)
        field = account[2]
        if field is None:
            _send_metadata(h, 200, {"aliases": ["default"], "email": email, "scopes": list(scopes)})
        elif field == "email":
            _send_metadata(h, 200, email)
        elif field == "scopes":
            _send_metadata(h, 200, "\n".join(scopes))
        elif field == "aliases":
            _send_metadata(h, 200, "default")
        else:  # a VM's token carries the VM's scopes, whatever a caller asks for
            issued = h.emu.auth.issue(Identity(email, frozenset(scopes)))
            _send_metadata(h, 200, {k: issued[k] for k in ("access_token", "expires_in", "token_type")})
    else:
        _send_metadata(h, 404, "Not Found")


def _jwt_subject(token: str) -> str:
    """The ``sub`` of an OIDC token (not verified: the emulator trusts the identity provider), or a
    digest of an opaque subject token."""
    try:
        payload = token.split(".")[1]
        return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"])
    except (IndexError, ValueError, KeyError, TypeError):
        return hashlib.sha256(token.encode()).hexdigest()[:16]


@route("POST", r"/v1/token", "sts.token")
def sts_token(h: RequestHandler, m: re.Match[str]) -> None:
    """``sts.googleapis.com/v1/token``: an external identity's token for a federated access token."""
    form = {k: v[-1] for k, v in parse_qs(h.body_bytes().decode()).items()}
    if h.emu.require_auth:
        h.send_json(404, {"error": "not found"})
        return
    if form.get("grant_type") != TOKEN_EXCHANGE:
        h.send_json(400, {"error": "invalid_request", "error_description": 'Invalid value for "grant_type".'})
        return
    subject, audience = form.get("subject_token", ""), form.get("audience", "")
    if not subject or not audience.startswith("//iam.googleapis.com/"):
        description = "The subject token and a workload identity pool provider audience are required."
        h.send_json(400, {"error": "invalid_request", "error_description": description})
        return
    principal = f"principal:{audience.removeprefix('//iam.googleapis.com/')}/subject/{_jwt_subject(subject)}"
    issued = h.emu.auth.issue(Identity(principal, frozenset(form.get("scope", "").split())))
    h.send_json(
        200,
        {
            "access_token": issued["access_token"],
            "issued_token_type": ACCESS_TOKEN_TYPE,
            "token_type": "Bearer",
            "expires_in": issued["expires_in"],
        },
    )


@route("POST", r"/v1/projects/-/serviceAccounts/(?P<email>[^/:]+):generateAccessToken", "iam.generateAccessToken")
def generate_access_token(h: RequestHandler, m: re.Match[str]) -> None:
    """IAM Credentials ``generateAccessToken``: a token of ``m["email"]`` for a caller with a
    valid token (Google also requires the Token Creator role, which the emulator grants everyone),
    with the scopes asked for (required) for at most an hour."""
    body = h.json_body()
    if h.identity is None:
        h.send_json(401, {"error": {"code": 401, "message": "Request had invalid authentication credentials.",
                                    "status": "UNAUTHENTICATED"}})  # fmt: skip
        return
    email = m["email"]
    if not email.endswith(".gserviceaccount.com"):
        h.send_json(404, {"error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND"}})
        return
    scopes = body.get("scope")
    try:
        lifetime = float(str(body.get("lifetime") or "3600s").removesuffix("s"))
    except ValueError:
        lifetime = -1.0
    # the reference: a scope is required; the lifetime is at most an hour unless an organization
    # policy allows up to 12 (which the emulator does not model)
    problem = "scope must name at least one OAuth scope" if not scopes or not isinstance(scopes, list) else None
    if problem is None and not 0 < lifetime <= 3600:
        problem = f"lifetime must be a duration of at most 3600s, got {body.get('lifetime')!r}"
    if problem:
        h.send_json(400, {"error": {"code": 400, "message": problem, "status": "INVALID_ARGUMENT"}})
        return
    issued = h.emu.auth.issue(Identity(email, frozenset(scopes or ())), lifetime)
    expiry = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=lifetime)
    h.send_json(200, {"accessToken": issued["access_token"], "expireTime": expiry.strftime("%Y-%m-%dT%H:%M:%SZ")})


@route("GET", r"/tokeninfo", "oauth.tokeninfo")
@route("POST", r"/tokeninfo", "oauth.tokeninfo")
def token_info(h: RequestHandler, m: re.Match[str]) -> None:
    """Google's ``tokeninfo``: the scopes, client and e-mail of an access token."""
    form = {k: v[-1] for k, v in parse_qs(h.body_bytes().decode()).items()}
    token = h.query.get("access_token") or form.get("access_token")
    try:
        h.send_json(200, h.emu.auth.token_info(token))
    except ValueError:
        h.send_json(400, {"error": "invalid_token", "error_description": "Invalid Value"})


@route("POST", r"/token", "oauth.token")
def _token(h: RequestHandler, m: re.Match[str]) -> None:
    form = {k: v[-1] for k, v in parse_qs(h.body_bytes().decode()).items()}
    try:
        grant = form.get("grant_type")
        h.send_json(200, h.emu.auth.exchange(grant, form.get("assertion"), verify=h.emu.require_auth, form=form))
    except ValueError as exc:
        error, _, description = str(exc).partition(": ")
        h.send_json(400, {"error": error, "error_description": description or error})
