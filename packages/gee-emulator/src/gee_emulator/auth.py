"""Identities, service-account keys and the OAuth token endpoint of the emulator.

Every token belongs to an identity: a service account (the real google-auth JWT flow runs against
``/token``: the client signs an assertion with the key's private key, the emulator checks it and
returns a bearer token) or a user (the OAuth ``refresh_token`` grant, and the ``authorized_user``
file that ``gcloud auth application-default login`` writes). A token carries the scopes it was
granted: a service account's are the ``scope`` claim of its assertion, a user's those granted at
login.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
REFRESH_TOKEN = "refresh_token"
#: The scopes a user grants at ``gcloud auth application-default login --scopes=...`` for EE work.
DEFAULT_USER_SCOPES = (
    "https://www.googleapis.com/auth/earthengine",
    "https://www.googleapis.com/auth/cloud-platform",
    "https://www.googleapis.com/auth/drive",
)


@dataclass(frozen=True)
class Identity:
    """Who a token belongs to and what it may do.

    :param email: the account (service accounts end in ``.gserviceaccount.com``, as on Google).
    :param scopes: the OAuth scopes granted to the token (empty: not known, nothing checked).
    """

    email: str
    scopes: frozenset[str] = frozenset()

    @property
    def is_service_account(self) -> bool:
        return self.email.endswith(".gserviceaccount.com")

    def has_scope_prefix(self, prefix: str) -> bool:
        return not self.scopes or any(s.startswith(prefix) for s in self.scopes)


# google-auth always names Google's token endpoint as the audience, whatever the key's token_uri.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"


def generate_service_account_key(token_uri: str, project: str, email: str | None = None) -> dict[str, str]:
    """A service-account key (the JSON Google issues) with a fresh RSA key and ``token_uri``."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": project,
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": email or f"gee-emulator@{project}.iam.gserviceaccount.com",
        "client_id": str(int.from_bytes(secrets.token_bytes(8), "big")),
        "auth_uri": token_uri.rsplit("/", 1)[0] + "/auth",
        "token_uri": token_uri,
    }


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class TokenAuthority:
    """Issues and checks bearer tokens.

    :param audience: the token URI that assertions must name as ``aud``.
    """

    def __init__(self, audience: str) -> None:
        self.audience = audience
        self._public_keys: dict[str, Any] = {}
        self._tokens: dict[str, tuple[float, Identity]] = {}  # token -> (expiry, identity)
        self._refresh_tokens: dict[str, tuple[str, str, Identity]] = {}  # -> (client id, secret, identity)
        self._lock = threading.Lock()

    def trust(self, key: dict[str, str]) -> None:
        """Accept assertions signed by this service-account key."""
        private = serialization.load_pem_private_key(key["private_key"].encode(), password=None)
        with self._lock:
            self._public_keys[key["client_email"]] = private.public_key()

    def exchange(
        self, grant_type: str | None, assertion: str | None, *, verify: bool, form: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Turn a signed JWT assertion (or a user's refresh token) into an access token; raise
        ValueError with the OAuth error."""
        if grant_type == REFRESH_TOKEN:
            return self._refresh((form or {}).get("refresh_token"), (form or {}).get("client_id"),
                                 (form or {}).get("client_secret"))  # fmt: skip
        if grant_type != JWT_BEARER or not assertion:
            raise ValueError("unsupported_grant_type")
        try:
            header_b64, payload_b64, sig_b64 = assertion.split(".")
            header = json.loads(_b64decode(header_b64))
            claims = json.loads(_b64decode(payload_b64))
        except ValueError as exc:
            raise ValueError("invalid_grant: malformed assertion") from exc
        if header.get("alg") != "RS256":
            raise ValueError("invalid_grant: only RS256 assertions are accepted")
        if claims.get("aud") not in (self.audience, GOOGLE_TOKEN_AUDIENCE):
            raise ValueError(f"invalid_grant: audience must be {GOOGLE_TOKEN_AUDIENCE}")
        if float(claims.get("exp", 0)) < time.time() - 30:
            raise ValueError("invalid_grant: assertion expired")
        if verify:
            with self._lock:
                public_key = self._public_keys.get(claims.get("iss", ""))
            if public_key is None:
                raise ValueError("invalid_grant: unknown service account")
            try:
                public_key.verify(
                    _b64decode(sig_b64),
                    f"{header_b64}.{payload_b64}".encode(),
                    padding.PKCS1v15(),
                    hashes.SHA256(),
                )
            except InvalidSignature as exc:
                raise ValueError("invalid_grant: bad signature") from exc
        scopes = frozenset(str(claims.get("scope") or "").split())
        return self._issue(Identity(str(claims.get("iss") or ""), scopes))

    def _issue(self, identity: Identity, lifetime: float = 3600) -> dict[str, Any]:
        token = "emu-" + secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = (time.time() + lifetime, identity)
        return {"access_token": token, "token_type": "Bearer", "expires_in": int(lifetime),
                "scope": " ".join(sorted(identity.scopes))}  # fmt: skip

    def _refresh(self, refresh_token: str | None, client_id: str | None, client_secret: str | None) -> dict[str, Any]:
        with self._lock:
            known = self._refresh_tokens.get(refresh_token or "")
        if known is None or (client_id, client_secret) != known[:2]:
            raise ValueError("invalid_grant: Bad Request")
        return self._issue(known[2])

    def user_credentials(self, email: str, scopes: tuple[str, ...], quota_project: str) -> dict[str, Any]:
        """An ``authorized_user`` file for ``email`` (as ``gcloud auth application-default login``
        writes it), with a current access token: google-auth sends refresh requests to Google's
        own endpoint whatever the file says (``from_authorized_user_info``), so offline clients use
        the token, valid for 30 days, and a refresh through ``/token`` works for clients that ask here."""
        identity = Identity(email, frozenset(scopes))
        client_id = f"{secrets.randbelow(10**12)}-emulator.apps.googleusercontent.com"
        client_secret, refresh_token = secrets.token_urlsafe(18), "1//emu-" + secrets.token_urlsafe(32)
        with self._lock:
            self._refresh_tokens[refresh_token] = (client_id, client_secret, identity)
        lifetime = 30 * 86400
        issued = self._issue(identity, lifetime)
        expiry = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + lifetime))
        return {
            "type": "authorized_user", "account": email, "client_id": client_id, "client_secret": client_secret,
            "refresh_token": refresh_token, "token": issued["access_token"], "expiry": expiry,
            "token_uri": self.audience,  # what gcloud writes; google-auth itself always refreshes at Google
            "scopes": list(scopes), "quota_project_id": quota_project,
        }  # fmt: skip

    def valid(self, authorization: str | None) -> bool:
        return self.identity(authorization) is not None

    def identity(self, authorization: str | None) -> Identity | None:
        """The identity a valid bearer token was issued to (``None``: no valid token)."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        with self._lock:
            expiry, identity = self._tokens.get(authorization[len("Bearer ") :], (0.0, None))
        return identity if expiry > time.time() else None
