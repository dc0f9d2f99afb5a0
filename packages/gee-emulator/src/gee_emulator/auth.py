"""Service-account keys and the OAuth token endpoint of the emulator.

The real google-auth JWT flow runs against ``/token``: the client signs an assertion with the key's
private key, the emulator checks it (signature against the keys it trusts, audience, expiry) and
returns a bearer token that every other route can be asked to require.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
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
        self._tokens: dict[str, tuple[float, str]] = {}  # token -> (expiry, identity's e-mail)
        self._lock = threading.Lock()

    def trust(self, key: dict[str, str]) -> None:
        """Accept assertions signed by this service-account key."""
        private = serialization.load_pem_private_key(key["private_key"].encode(), password=None)
        with self._lock:
            self._public_keys[key["client_email"]] = private.public_key()

    def exchange(self, grant_type: str | None, assertion: str | None, *, verify: bool) -> dict[str, Any]:
        """Turn a signed JWT assertion into an access token; raise ValueError with the OAuth error."""
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
        token = "emu-" + secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = (time.time() + 3600, str(claims.get("iss") or ""))
        return {"access_token": token, "token_type": "Bearer", "expires_in": 3600}

    def valid(self, authorization: str | None) -> bool:
        return self.identity(authorization) is not None

    def identity(self, authorization: str | None) -> str | None:
        """The e-mail of the identity a valid bearer token was issued to (``None``: no valid token)."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        with self._lock:
            expiry, email = self._tokens.get(authorization[len("Bearer ") :], (0.0, ""))
        return email if expiry > time.time() else None
