"""``Idempotency-Key`` on POST: a retried request gets the first one's answer instead of a second job.

Records live in Redis under ``{prefix}api:idem:{key_id}:{sha256(idempotency key)}`` for
``RECORD_TTL_S``: ``{"state": "pending"|"done", "fingerprint", "status", "body", "location"}``.
The fingerprint is a SHA-256 over the method, the path, the form fields and each uploaded file's name
and content hash (not the raw body: a multipart boundary differs between two sends of the same form).

- same key, same fingerprint, done   → the stored status, body and ``Location`` again (one job)
- same key, another fingerprint      → 422 (a key names one request)
- same key while the first is running → 409 (try again when it has finished)
- the first request failed           → its record is dropped, so a retry runs afresh
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from moodbgm.api.auth import Principal
from moodbgm.api.problems import ProblemError

HEADER = "Idempotency-Key"
RECORD_TTL_S = 24 * 3600
PENDING_TTL_S = 3600
MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class Replay:
    status: int
    body: dict[str, Any]
    location: str | None


def fingerprint(
    method: str, path: str, fields: Mapping[str, str], files: Sequence[tuple[str, str, str]] = ()
) -> str:
    """Hash of a request's meaning: method, path, form fields, and (field, name, sha256) per file."""
    doc = {"m": method, "p": path, "f": sorted(fields.items()), "u": [list(f) for f in files]}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


class Idempotency:
    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.redis = client
        self.prefix = prefix

    def _key(self, who: Principal, idem_key: str) -> str:
        digest = hashlib.sha256(idem_key.encode()).hexdigest()
        return f"{self.prefix}api:idem:{who.key_id}:{digest}"

    @staticmethod
    def check_key(idem_key: str | None) -> str | None:
        if idem_key is None:
            return None
        if not 1 <= len(idem_key) <= MAX_KEY_LENGTH:
            raise ProblemError(
                400, "bad-idempotency-key", "Bad Idempotency-Key", f"{HEADER} must be 1 to 255 characters"
            )
        return idem_key

    def seen(self, who: Principal, idem_key: str) -> bool:
        """Whether a request already used this key (then limits are not counted again)."""
        return bool(self.redis.exists(self._key(who, idem_key)))

    def begin(self, who: Principal, idem_key: str, fp: str) -> Replay | None:
        """Claim the key for this request (``None``: go ahead, then ``finish`` or ``abandon``), or the
        answer to replay. Raises 422 for another request under the same key, 409 while it runs."""
        key = self._key(who, idem_key)
        record = json.dumps({"state": "pending", "fingerprint": fp})
        if self.redis.set(key, record, nx=True, ex=PENDING_TTL_S):
            return None
        raw = self.redis.get(key)
        if raw is None:  # expired in between: claim again
            return self.begin(who, idem_key, fp)
        old = json.loads(raw)
        if old["fingerprint"] != fp:
            raise ProblemError(
                422,
                "idempotency-key-reused",
                "Idempotency-Key reused",
                f"this {HEADER} was used for a different request (another body or path); "
                "use a new key for a new request",
            )
        if old["state"] != "done":
            raise ProblemError(
                409,
                "idempotency-in-progress",
                "Request in progress",
                f"a request with this {HEADER} is still being processed; retry when it has finished",
            )
        return Replay(int(old["status"]), old["body"], old.get("location"))

    def finish(
        self, who: Principal, idem_key: str, fp: str, status: int, body: dict[str, Any], location: str | None
    ) -> None:
        record = {"state": "done", "fingerprint": fp, "status": status, "body": body, "location": location}
        self.redis.set(self._key(who, idem_key), json.dumps(record), ex=RECORD_TTL_S)

    def abandon(self, who: Principal, idem_key: str) -> None:
        self.redis.delete(self._key(who, idem_key))
