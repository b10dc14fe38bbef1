"""Per-key limits, kept in Redis so every API replica counts the same (keys under the store's prefix):

- ``{prefix}api:active:{key_id}``  sorted set: the key's queued/running job ids (score +inf) and
  reservations ``r:<uuid>`` for uploads in flight (score = when the reservation lapses). A Lua script
  drops finished jobs and lapsed reservations, then admits or refuses atomically, so two uploads racing
  cannot both take the last slot. Over ``max_active_jobs_per_key`` → 429 with ``Retry-After``.
- ``{prefix}api:uploads:{key_id}`` sorted set of upload times: a rolling hour. Over
  ``max_uploads_per_hour`` → 429 with ``Retry-After`` = seconds until the oldest upload leaves the hour.
- storage: the bytes on disk of the key's jobs (hard-linked variations counted once) before an upload
  is taken; with the upload's size over ``storage_quota_mb`` → 413.

Admin keys have no limits.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import redis

from moodbgm.api.auth import Principal
from moodbgm.api.problems import LimitExceeded
from moodbgm.config import Settings
from moodbgm.jobstore import JobStore

RESERVATION_S = 3600  # an upload in flight holds its slot at most this long
ACTIVE_RETRY_AFTER_S = 30  # jobs take minutes; ask again after this

# KEYS[1] active set; ARGV: job key prefix, now, limit, n, token (or ""), reservation expiry (or 0)
# Returns the number of slots in use (not counting ARGV token) when refused, or -1 when admitted.
_ADMIT = """
local members = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local now = tonumber(ARGV[2])
local used = 0
for i = 1, #members, 2 do
  local m, score = members[i], tonumber(members[i + 1])
  if string.sub(m, 1, 2) == 'r:' then
    if score < now then redis.call('ZREM', KEYS[1], m)
    elseif m ~= ARGV[5] then used = used + 1 end
  else
    local status = redis.call('HGET', ARGV[1] .. m, 'status')
    if (not status) or status == 'done' or status == 'failed' or status == 'cancelled' then
      redis.call('ZREM', KEYS[1], m)
    else used = used + 1 end
  end
end
if used + tonumber(ARGV[4]) > tonumber(ARGV[3]) then return used end
if ARGV[5] ~= '' then redis.call('ZADD', KEYS[1], tonumber(ARGV[6]), ARGV[5]) end
redis.call('EXPIRE', KEYS[1], 8 * 24 * 3600)
return -1
"""

# KEYS[1] uploads set; ARGV: now, window, limit, member. Returns -1 when counted, else seconds to wait.
_RATE = """
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.ceil(tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('EXPIRE', KEYS[1], window)
return -1
"""


class Limits:
    def __init__(self, settings: Settings, store: JobStore) -> None:
        self.settings = settings
        self.store = store
        self.redis: redis.Redis = store.redis
        self._admit = self.redis.register_script(_ADMIT)
        self._rate = self.redis.register_script(_RATE)

    def _key(self, kind: str, who: Principal) -> str:
        return f"{self.store.prefix}api:{kind}:{who.key_id}"

    # ---- uploads per hour
    def count_upload(self, who: Principal) -> None:
        if who.admin:
            return
        limit = self.settings.max_uploads_per_hour
        now = time.time()
        wait = int(self._rate(keys=[self._key("uploads", who)], args=[now, 3600, limit, uuid.uuid4().hex]))
        if wait >= 0:
            raise LimitExceeded(
                "rate-limited",
                "Too many uploads",
                f"this key made {limit} uploads in the last hour (the limit); try again in {wait} s",
                retry_after=max(1, wait),
            )

    # ---- active jobs
    def reserve(self, who: Principal, n: int = 1, token: str | None = None) -> str | None:
        """Hold ``n`` active-job slots for an upload in flight; returns the reservation to pass to
        ``confirm`` or ``release``. With ``token``, re-checks an existing reservation for ``n`` slots."""
        if who.admin:
            return None
        token = token or f"r:{uuid.uuid4().hex}"
        now = time.time()
        limit = self.settings.max_active_jobs_per_key
        used = int(
            self._admit(
                keys=[self._key("active", who)],
                args=[self.store.prefix + "job:", now, limit, n, token, now + RESERVATION_S],
            )
        )
        if used >= 0:
            self.release(who, token)
            raise LimitExceeded(
                "too-many-active-jobs",
                "Too many active jobs",
                f"this key has {used} queued or running job(s) and uploads in flight; the limit is {limit}"
                + (f" and this request needs {n}" if n > 1 else "")
                + "; wait for one to finish or cancel one",
                retry_after=ACTIVE_RETRY_AFTER_S,
            )
        return token

    def confirm(self, who: Principal, token: str | None, jobs: Iterable[str]) -> None:
        """The upload became jobs: they take the reservation's place."""
        if token is None:
            return
        pipe = self.redis.pipeline()
        pipe.zadd(self._key("active", who), {j: math.inf for j in jobs})
        pipe.zrem(self._key("active", who), token)
        pipe.execute()

    def release(self, who: Principal, token: str | None) -> None:
        if token is not None:
            self.redis.zrem(self._key("active", who), token)

    # ---- storage
    def check_storage(self, who: Principal, incoming: int) -> None:
        """413 when the key's jobs already use, or with ``incoming`` bytes would use, over the quota."""
        if who.admin:
            return
        quota = self.settings.storage_quota_mb * 1024 * 1024
        used = self.storage_used(who)
        if used + incoming > quota:
            mb = 1024 * 1024
            raise LimitExceeded(
                "storage-quota",
                "Storage quota exceeded",
                f"this key's jobs use {used / mb:.1f} MB of its {quota // mb} MB quota"
                + (f" and this upload adds {incoming / mb:.1f} MB" if incoming else "")
                + "; delete finished jobs (DELETE /api/v1/jobs/{id}) to make room",
                status=413,
            )

    def storage_used(self, who: Principal) -> int:
        ids = [m.decode() for m in self.redis.zrange(self.store.owner_index_key(who.key_id), 0, -1)]  # type: ignore[union-attr]
        return disk_usage(self.settings.data_dir / job_id for job_id in ids)


def disk_usage(folders: Iterable[Path]) -> int:
    """Bytes of the files under ``folders``, each inode once (variations share their input)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for folder in folders:
        for root, _dirs, files in os.walk(folder):
            for f in files:
                try:
                    st = os.stat(os.path.join(root, f))
                except FileNotFoundError:
                    continue
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_size
    return total
