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
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
EARTHENGINE_SCOPE = "https://www.googleapis.com/auth/earthengine"
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
DRIVE_SCOPE = "https://www.googleapis.com/auth/drive"
#: The scopes a person asks for EE work with an OAuth client of their own
#: (``gcloud auth application-default login --client-id-file=... --scopes=...``).
DEFAULT_USER_SCOPES = (EARTHENGINE_SCOPE, CLOUD_PLATFORM_SCOPE, DRIVE_SCOPE)
#: gcloud's own OAuth client (its public ADC client id): since 2025-06-23 Google grants it Cloud
#: scopes only, Drive refused with "Access blocked" (Google's notice to gcloud users)
GCLOUD_CLIENT_ID = "764086051850-6qr4p6gpi6hn506pt8ejuq83di341hur.apps.googleusercontent.com"
GCLOUD_SCOPES = (EARTHENGINE_SCOPE, CLOUD_PLATFORM_SCOPE)
#: Earth Engine's own OAuth client and its default scopes (``ee/oauth.py`` CLIENT_ID, SCOPES): what
#: ``earthengine authenticate`` / ``ee.Authenticate()`` store in ``~/.config/earthengine/credentials``
EE_CLIENT_ID = "517222506229-vsmmajv00ul0bs7p89v5m89qs8eb9359.apps.googleusercontent.com"
EE_CLIENT_SECRET = "RUP0RZ6e0pPhDzsqIJ7KlNd1"  # EE's public installed-app secret, ee/oauth.py; nosec B105
EE_SCOPES = (
    EARTHENGINE_SCOPE,
    CLOUD_PLATFORM_SCOPE,
    DRIVE_SCOPE,
    "https://www.googleapis.com/auth/devstorage.full_control",
)
#: where a person's OAuth credentials come from: gcloud's client, EE's client, or the person's own
OAUTH_CLIENTS = ("gcloud", "earthengine", "own")
#: what the login page says when gcloud's client asks for Drive
GCLOUD_DRIVE_BLOCKED = (
    "Access blocked: gcloud's OAuth client cannot be granted {scopes} (Google grants it Cloud scopes only "
    "since 2025-06-23). Use the credentials `earthengine authenticate` writes, or pass an OAuth client of your "
    "own with `gcloud auth application-default login --client-id-file=...`."
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
        self._token_clients: dict[str, str] = {}  # access token -> the OAuth client it was issued to
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

    def _issue(self, identity: Identity, lifetime: float = 3600, client_id: str = "") -> dict[str, Any]:
        token = "emu-" + secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = (time.time() + lifetime, identity)
            self._token_clients[token] = client_id
        return {"access_token": token, "token_type": "Bearer", "expires_in": int(lifetime),
                "scope": " ".join(sorted(identity.scopes))}  # fmt: skip

    def issue(self, identity: Identity, lifetime: float = 3600) -> dict[str, Any]:
        """A bearer token for ``identity`` (the metadata server's, IAM's and STS's tokens)."""
        return self._issue(identity, lifetime)

    def token_info(self, token: str | None) -> dict[str, Any]:
        """Google's ``tokeninfo`` answer for an access token; ValueError when it is not valid."""
        with self._lock:
            expiry, identity = self._tokens.get(token or "", (0.0, None))
            client_id = self._token_clients.get(token or "", "")
        if identity is None or expiry <= time.time():
            raise ValueError("invalid_token: Invalid Value")
        info = {"azp": client_id, "aud": client_id, "scope": " ".join(sorted(identity.scopes)), "exp": str(int(expiry)),
                "expires_in": str(int(expiry - time.time())), "access_type": "offline"}  # fmt: skip
        if identity.email:
            info |= {"email": identity.email, "email_verified": "true"}
        return info

    def _refresh(self, refresh_token: str | None, client_id: str | None, client_secret: str | None) -> dict[str, Any]:
        with self._lock:
            known = self._refresh_tokens.get(refresh_token or "")
        if known is None or (client_id, client_secret) != known[:2]:
            raise ValueError("invalid_grant: Bad Request")
        return self._issue(known[2], client_id=known[0])

    def _grant(self, email: str, scopes: tuple[str, ...], client: str) -> tuple[Identity, str, str, str]:
        """A person's consent to ``client`` for ``scopes``: (identity, client id, secret, refresh
        token). gcloud's client is refused non-Cloud scopes, as Google's login page does."""
        if client not in OAUTH_CLIENTS:
            raise ValueError(f"unknown OAuth client {client!r}: use one of {OAUTH_CLIENTS}")
        blocked = sorted(s for s in scopes if s not in GCLOUD_SCOPES and "/auth/drive" in s)
        if client == "gcloud" and blocked:
            raise ValueError(GCLOUD_DRIVE_BLOCKED.format(scopes=", ".join(blocked)))
        if client == "gcloud":
            client_id, client_secret = GCLOUD_CLIENT_ID, "d-FL95Q19q7MQmFpd7hHD0Ty"  # gcloud's public one; nosec B105
        elif client == "earthengine":
            client_id, client_secret = EE_CLIENT_ID, EE_CLIENT_SECRET
        else:
            client_id = f"{secrets.randbelow(10**12)}-emulator.apps.googleusercontent.com"
            client_secret = secrets.token_urlsafe(18)
        refresh_token = "1//emu-" + secrets.token_urlsafe(32)
        identity = Identity(email, frozenset(scopes))
        with self._lock:
            self._refresh_tokens[refresh_token] = (client_id, client_secret, identity)
        return identity, client_id, client_secret, refresh_token

    def ee_credentials(self, email: str, project: str) -> dict[str, Any]:
        """The file ``earthengine authenticate`` writes (``~/.config/earthengine/credentials``): a
        refresh token for EE's own client with EE's scopes (Drive among them) and the project;
        ``ee/oauth.py`` fills in EE's client id and secret and Google's token URI."""
        _, _, _, refresh_token = self._grant(email, EE_SCOPES, "earthengine")
        return {"refresh_token": refresh_token, "scopes": list(EE_SCOPES), "project": project}

    def user_credentials(
        self, email: str, scopes: tuple[str, ...], quota_project: str, client: str = "gcloud"
    ) -> dict[str, Any]:
        """An ``authorized_user`` file for ``email`` (as ``gcloud auth application-default login``
        writes it, with gcloud's client or, ``client="own"``, one passed by ``--client-id-file``),
        with a current access token: google-auth sends refresh requests to Google's own endpoint
        whatever the file says (``from_authorized_user_info``), so offline clients use the token,
        valid for 30 days, and a refresh through ``/token`` works for clients that ask here."""
        identity, client_id, client_secret, refresh_token = self._grant(email, scopes, client)
        lifetime = 30 * 86400
        issued = self._issue(identity, lifetime, client_id=client_id)
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
