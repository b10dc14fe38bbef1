"""Download links that expire: ``/api/v1/jobs/{id}/files/{name}?exp=<unix>&sig=<hmac>``.

The HMAC-SHA256 covers the job id, the file name, the expiry and the ``original`` flag, so a link opens
one file of one job until it expires. The original upload (``input``) opens only with a link made for it
(``original=1`` inside the signature); a link for any other file never does. A browser's ``<video src>``
uses these links, since it cannot send an Authorization header.

The secret is ``Settings.link_secret`` or, when that is empty, a random one kept in Redis (``SET NX``
under the store's prefix), so every API replica signs and checks with the same key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlencode

import redis

from moodbgm.api.schemas import JobStatus

SECRET_KEY = "api:link-secret"


class BadLink(Exception):
    """An expired or tampered download link (HTTP 403)."""


@dataclass(frozen=True)
class LinkSigner:
    secret: bytes
    ttl_s: int

    def _mac(self, job_id: str, name: str, exp: int, original: bool) -> str:
        msg = f"{job_id}\n{name}\n{exp}\n{int(original)}".encode()
        return hmac.new(self.secret, msg, hashlib.sha256).hexdigest()

    def query(self, job_id: str, name: str, now: float | None = None) -> str:
        """The query string of a link to ``name`` (``input`` gets the ``original`` flag)."""
        exp = int((time.time() if now is None else now) + self.ttl_s)
        original = name == "input"
        params = {"exp": str(exp), **({"original": "1"} if original else {}), "sig": ""}
        params["sig"] = self._mac(job_id, name, exp, original)
        return urlencode(params)

    def verify(self, job_id: str, name: str, exp: str, sig: str, original: bool) -> None:
        """Raise ``BadLink`` unless the link is intact, unexpired and made for this file."""
        try:
            expires = int(exp)
        except ValueError:
            raise BadLink("malformed download link (exp)") from None
        if not hmac.compare_digest(sig.encode(), self._mac(job_id, name, expires, original).encode()):
            raise BadLink("download link signature does not match (tampered, or for another file)")
        if name == "input" and not original:
            raise BadLink("this link does not open the original upload")
        if time.time() > expires:
            raise BadLink("download link expired; read the job again for fresh links")


def shared_secret(client: redis.Redis, prefix: str) -> bytes:
    """A random link secret kept in Redis, made by whichever replica asks first."""
    key = prefix + SECRET_KEY
    client.set(key, secrets.token_hex(32), nx=True)
    value = client.get(key)
    if value is None:  # flushed between the two calls: try once more
        client.set(key, secrets.token_hex(32), nx=True)
        value = client.get(key)
    assert value is not None
    return bytes(value)  # type: ignore[arg-type]


def signed_status(status: JobStatus, signer: LinkSigner, original: bool = False) -> JobStatus:
    """The job's file links signed; the original upload listed only when asked (``original``)."""
    files = [
        f.model_copy(update={"url": f"{f.url}?{signer.query(status.id, f.name)}"})
        for f in status.files
        if original or f.name != "input"
    ]
    return status.model_copy(update={"files": files})
