"""How many tasks of some Celery queues wait in the broker and how many are running, read from Redis.

Celery's Redis transport (kombu) keeps a queue's waiting messages in Redis lists named after the queue
(one per priority step) and every delivered, not yet acknowledged message in the hash ``unacked`` as
JSON ``[message, exchange, routing_key]``. With ``acks_late`` a message stays there until its stage
finished, so those are the running (or reserved) tasks, per queue by their routing key (each stage's
queue is its own routing key, ``worker.app``). A worker lost for good leaves its messages there until
the visibility timeout restores them to the waiting list, so they are never lost from the count.

KEDA scales the workers on waiting + running (``GET /ops/queues``, ``k8s/components/keda``): a pod busy
with a task stays counted, so scale-in only removes pods that the work in hand does not need.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# kombu.transport.redis: the unacked hash, and the lists of the priority steps Celery uses by default
UNACKED_KEY = "unacked"
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)


@dataclass(frozen=True)
class QueueDepth:
    queues: tuple[str, ...]
    waiting: int
    running: int


def waiting_lists(queue: str) -> list[str]:
    """The Redis lists holding ``queue``'s waiting messages (priority 0 is the queue's own name)."""
    return [queue if p == 0 else f"{queue}{PRIORITY_SEPARATOR}{p}" for p in PRIORITY_STEPS]


def _routing_key(raw: Any) -> str | None:
    try:
        entry = json.loads(raw)
        return str(entry[2])
    except (ValueError, TypeError, IndexError, KeyError):
        return None


def broker_depth(client: Any, queues: list[str] | tuple[str, ...]) -> QueueDepth:
    """Waiting and running tasks of ``queues`` in the broker that ``client`` (a ``redis.Redis``) reaches."""
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        for name in waiting_lists(queue):
            pipe.llen(name)
    waiting = sum(int(n) for n in pipe.execute())
    wanted = set(queues)
    running = sum(1 for raw in client.hvals(UNACKED_KEY) if _routing_key(raw) in wanted)
    return QueueDepth(queues=tuple(queues), waiting=waiting, running=running)
