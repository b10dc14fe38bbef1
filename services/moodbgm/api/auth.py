"""API keys: who is calling (``Principal``) and what they may see.

A key is never stored or logged; jobs record its *key id*, the first 16 hex digits of its SHA-256. Two
roles: ``user`` sees only the jobs and batches its key made (another key's job answers 404, as if it did
not exist) and ``admin`` sees every job and ``/metrics``. With ``MOODBGM_AUTH=disabled`` every caller is
the admin ``anonymous`` (a loud warning at start); with keys required and none configured the API refuses
to start.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Request

from moodbgm.config import ApiKeyEntry, Settings

log = logging.getLogger(__name__)

Role = Literal["user", "admin"]
ANONYMOUS = "anonymous"
BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="moodbgm"'}


def key_id(key: str) -> str:
    """The id a job records for the key that made it (not reversible to the key)."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Principal:
    key_id: str
    role: Role

    @property
    def admin(self) -> bool:
        return self.role == "admin"

    def may_see(self, owner: str | None) -> bool:
        return self.admin or (bool(owner) and hmac.compare_digest(owner or "", self.key_id))


@dataclass(frozen=True)
class Keyring:
    """The configured keys by their SHA-256 digest; ``None`` when auth is disabled."""

    digests: dict[bytes, Principal] | None

    @classmethod
    def from_settings(cls, settings: Settings) -> Keyring:
        if settings.auth == "disabled":
            log.warning(
                "AUTHENTICATION IS DISABLED (MOODBGM_AUTH=disabled): anyone who reaches this API can "
                "submit, read, cancel and delete every job. Never expose it beyond this machine."
            )
            return cls(None)
        entries = [ApiKeyEntry(key=k) if isinstance(k, str) else k for k in settings.api_keys]
        if not entries:
            raise ValueError(
                'no API keys: set MOODBGM_API_KEYS (e.g. \'[{"key": "...", "role": "admin"}]\' or '
                "'[\"key\"]'), or MOODBGM_AUTH=disabled for a local, single-user API"
            )
        digests: dict[bytes, Principal] = {}
        for e in entries:
            if not e.key.strip():
                raise ValueError("an API key in MOODBGM_API_KEYS is empty")
            digests[hashlib.sha256(e.key.encode()).digest()] = Principal(key_id(e.key), e.role)
        admins = sum(p.admin for p in digests.values())
        log.info("API keys: %d (%d admin)", len(digests), admins)
        return cls(digests)

    @property
    def enabled(self) -> bool:
        return self.digests is not None

    def identify(self, key: str | None) -> Principal | None:
        if self.digests is None:
            return Principal(ANONYMOUS, "admin")
        if not key:
            return None
        # a dict lookup on the digest: timing reveals nothing about the keys themselves
        return self.digests.get(hashlib.sha256(key.encode()).digest())


def bearer_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else None


def keyring(request: Request) -> Keyring:
    ring: Keyring = request.app.state.keyring
    return ring


def optional_principal(request: Request) -> Principal | None:
    return keyring(request).identify(bearer_key(request))


def principal(request: Request) -> Principal:
    """The caller; 401 without a known bearer key (unless auth is disabled)."""
    who = optional_principal(request)
    if who is None:
        raise HTTPException(
            401, "missing or unknown API key (send Authorization: Bearer <key>)", headers=BEARER_CHALLENGE
        )
    return who


def admin(who: Annotated[Principal, Depends(principal)]) -> Principal:
    if not who.admin:
        raise HTTPException(403, "this needs an admin key")
    return who


Caller = Annotated[Principal, Depends(principal)]
Admin = Annotated[Principal, Depends(admin)]
