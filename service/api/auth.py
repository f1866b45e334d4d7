"""Bearer API keys, stored hashed in ``TTA_API_KEYS_FILE``: one ``tenant:sha256-hex`` per line.

Keys are long random tokens (``tta keys create``), so a plain SHA-256 is the right hash: there
is nothing to brute-force that a slow password hash would protect.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

from contract.errors import UnauthorizedError

ANONYMOUS = "anonymous"
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
KEY_PREFIX = "tta_"
TENANT_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def check_tenant(tenant: str) -> None:
    if not tenant or len(tenant) > 64 or not set(tenant) <= TENANT_CHARS:
        raise ValueError("tenant names are 1-64 characters of letters, digits, '-', '_' and '.'")


def load_key_file(path: Path) -> dict[str, str]:
    """sha256 hex -> tenant. Raises ValueError naming the bad line."""
    table: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        tenant, sep, digest = line.rpartition(":")
        if not sep or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"{path}:{number}: expected 'tenant:<64 hex digits of sha256>'")
        check_tenant(tenant)
        table[digest] = tenant
    return table


def append_key(path: Path, tenant: str) -> str:
    """Create a key for ``tenant``, store its hash in ``path``; returns the key (shown once)."""
    check_tenant(tenant)
    key = new_key()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(f"{tenant}:{hash_key(key)}\n")
    path.chmod(0o600)
    return key


class Authenticator:
    def __init__(self, keys: dict[str, str] | None) -> None:
        self.keys = keys
        """None: auth is off (every caller is ``anonymous``)."""

    @property
    def enabled(self) -> bool:
        return self.keys is not None

    @property
    def tenants(self) -> list[str]:
        """Every tenant a key may act for."""
        return sorted(set(self.keys.values())) if self.keys is not None else [ANONYMOUS]

    def owner(self, authorization: str | None) -> str:
        if self.keys is None:
            return ANONYMOUS
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise UnauthorizedError("missing API key: send 'Authorization: Bearer <key>'",
                                    field="Authorization")
        digest = hash_key(token.strip())
        for known, tenant in self.keys.items():
            if hmac.compare_digest(known, digest):
                return tenant
        raise UnauthorizedError("unknown API key", field="Authorization")


def bind_check(host: str, auth_enabled: bool, auth_disabled: bool) -> str | None:
    """Why the API must not start on ``host`` (None if it may)."""
    if auth_enabled or auth_disabled or host in LOOPBACK_HOSTS:
        return None
    return (f"refusing to listen on {host} without API keys: set TTA_API_KEYS_FILE (create keys with "
            "`tta keys create TENANT`), or TTA_AUTH_DISABLED=true behind a trusted gateway")
