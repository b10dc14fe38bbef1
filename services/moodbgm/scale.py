"""``moodbgm scale QUEUE N``: set the replica count of the worker Deployment that consumes a Celery queue.

Which Deployment serves which queue is read from the cluster, not hard-coded: every worker Deployment of
the kustomize manifests (``k8s/``) carries the label ``app.kubernetes.io/component=worker`` and the
annotation ``moodbgm.io/queues`` (e.g. ``"stt,nlp"``), and the overlays differ (the ``gpu`` overlay moves
``stt`` to its own GPU Deployment). The replica count is written through the Deployment's ``scale``
subresource with a merge patch, exactly what ``kubectl scale`` does.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from moodbgm.errors import MoodbgmError
from moodbgm.stages import QUEUES

log = logging.getLogger(__name__)

DEFAULT_NAMESPACE = "moodbgm"
WORKER_SELECTOR = "app.kubernetes.io/part-of=moodbgm,app.kubernetes.io/component=worker"
QUEUES_ANNOTATION = "moodbgm.io/queues"
MAX_REPLICAS = 1000
REQUEST_TIMEOUT_S = 30.0


class ScaleError(MoodbgmError):
    """The cluster could not be reached or refused the change; the message says what it answered."""


@dataclass(frozen=True)
class ScaleRequest:
    queue: str
    replicas: int
    namespace: str = DEFAULT_NAMESPACE

    def __post_init__(self) -> None:
        if self.queue not in QUEUES:
            raise ValueError(f"unknown queue {self.queue!r}; expected one of {', '.join(QUEUES)}")
        if isinstance(self.replicas, bool) or not isinstance(self.replicas, int):
            raise ValueError(f"replicas must be an integer, got {self.replicas!r}")
        if not 0 <= self.replicas <= MAX_REPLICAS:
            raise ValueError(f"replicas must be between 0 and {MAX_REPLICAS}, got {self.replicas}")
        if not self.namespace:
            raise ValueError("namespace must not be empty")


@dataclass(frozen=True)
class ScaleResult:
    queue: str
    namespace: str
    deployment: str
    replicas: int  # desired count now set on the Deployment
    previous: int | None  # desired count before the change (None when the Deployment had none)
    queues: tuple[str, ...]  # every queue the Deployment consumes (scaling one scales them all)

    def describe(self) -> str:
        shared = [q for q in self.queues if q != self.queue]
        also = f" (also serves {', '.join(shared)})" if shared else ""
        before = "?" if self.previous is None else str(self.previous)
        return f"deployment/{self.deployment} in {self.namespace}: replicas {before} -> {self.replicas}{also}"


def parse_queues(annotation: str | None) -> tuple[str, ...]:
    """``"stt, nlp"`` -> ``("stt", "nlp")``; empty or missing -> ``()``."""
    if not annotation:
        return ()
    return tuple(q.strip() for q in annotation.split(",") if q.strip())


def load_apps_api(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """An ``AppsV1Api`` for the kubeconfig (``kubeconfig``/``context``, else the default file), or,
    when there is none, for the in-cluster service account. Raises ``ScaleError`` if neither works."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    try:
        api_client = config.new_client_from_config(config_file=kubeconfig, context=context)
        log.info("using kubeconfig %s", kubeconfig or "(default)")
        return client.AppsV1Api(api_client)
    except ConfigException as kube_err:
        if kubeconfig or context:
            raise ScaleError(f"cannot load kubeconfig: {kube_err}") from kube_err
        try:
            config.load_incluster_config()
        except ConfigException as cluster_err:
            raise ScaleError(
                f"no Kubernetes configuration: no kubeconfig ({kube_err}) and not in a cluster "
                f"({cluster_err}); pass --kubeconfig or set KUBECONFIG"
            ) from cluster_err
        log.info("using the in-cluster service account")
        return client.AppsV1Api()


def _api_message(err: Exception) -> str:
    """Turn a client exception into one line: the HTTP status and the API server's own message."""
    from kubernetes.client.exceptions import ApiException

    if isinstance(err, ApiException):
        detail = err.reason or ""
        with contextlib.suppress(ValueError, AttributeError):  # a body that is not a Status: keep the reason
            detail = json.loads(err.body or "").get("message") or detail
        return f"HTTP {err.status}: {detail}".strip()
    return f"{type(err).__name__}: {err}"


def find_deployment(api: Any, queue: str, namespace: str) -> tuple[str, tuple[str, ...], int | None]:
    """Name, queues and current desired replicas of the one worker Deployment consuming ``queue``."""
    try:
        deployments = api.list_namespaced_deployment(
            namespace, label_selector=WORKER_SELECTOR, _request_timeout=REQUEST_TIMEOUT_S
        )
    except Exception as err:
        raise ScaleError(f"cannot list worker deployments in {namespace}: {_api_message(err)}") from err
    matches = []
    for dep in deployments.items or []:
        queues = parse_queues((dep.metadata.annotations or {}).get(QUEUES_ANNOTATION))
        if queue in queues:
            replicas = dep.spec.replicas if dep.spec is not None else None
            matches.append((dep.metadata.name, queues, replicas))
    if not matches:
        raise ScaleError(
            f"no worker Deployment in namespace {namespace} consumes queue {queue!r} "
            f"(looked for {WORKER_SELECTOR} with annotation {QUEUES_ANNOTATION})"
        )
    if len(matches) > 1:
        names = ", ".join(m[0] for m in matches)
        raise ScaleError(f"queue {queue!r} is consumed by several Deployments ({names}); scale them by name")
    return matches[0]


def scale_queue(
    queue: str, replicas: int, namespace: str = DEFAULT_NAMESPACE, api: Any = None
) -> ScaleResult:
    """Set the replicas of the worker Deployment consuming ``queue``.

    ``api`` is a ``kubernetes.client.AppsV1Api``; ``None`` loads the kubeconfig / in-cluster config.
    Raises ``ValueError`` for an unknown queue or a bad count and ``ScaleError`` when the API fails.
    """
    request = ScaleRequest(queue=queue, replicas=replicas, namespace=namespace)
    if api is None:
        api = load_apps_api()
    name, queues, previous = find_deployment(api, request.queue, request.namespace)
    try:
        scale = api.patch_namespaced_deployment_scale(
            name,
            request.namespace,
            {"spec": {"replicas": request.replicas}},
            _content_type="application/merge-patch+json",
            _request_timeout=REQUEST_TIMEOUT_S,
        )
    except Exception as err:
        raise ScaleError(f"cannot scale deployment/{name} in {namespace}: {_api_message(err)}") from err
    applied = scale.spec.replicas if scale.spec is not None and scale.spec.replicas is not None else None
    if applied != request.replicas:
        raise ScaleError(
            f"deployment/{name}: asked for {request.replicas} replicas, the API answered {applied}"
        )
    result = ScaleResult(
        queue=request.queue,
        namespace=request.namespace,
        deployment=name,
        replicas=applied,
        previous=previous,
        queues=queues,
    )
    log.info("scaled %s", result.describe())
    return result


def add_scale_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``scale`` subcommand to an ``argparse`` subparsers object; it dispatches to ``run_scale``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "scale",
        help="set the number of workers consuming a queue (Kubernetes)",
        description="Set the replicas of the worker Deployment that consumes QUEUE "
        "(found by its moodbgm.io/queues annotation).",
    )
    _add_arguments(parser)
    parser.set_defaults(func=run_scale)
    return parser


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("queue", choices=QUEUES, help="Celery queue")
    parser.add_argument("replicas", type=int, help="number of worker pods (0 stops the queue's workers)")
    parser.add_argument(
        "-n", "--namespace", default=DEFAULT_NAMESPACE, help="namespace (default: %(default)s)"
    )
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: KUBECONFIG or ~/.kube)")
    parser.add_argument("--context", default=None, help="kubeconfig context (default: the current one)")


def run_scale(args: argparse.Namespace) -> int:
    """Run a parsed ``scale`` command: 0 done, 2 bad request, 1 the cluster failed."""
    try:
        ScaleRequest(queue=args.queue, replicas=args.replicas, namespace=args.namespace)
    except ValueError as err:
        print(f"moodbgm scale: {err}", file=sys.stderr)
        return 2
    try:
        api = load_apps_api(args.kubeconfig, args.context)
        result = scale_queue(args.queue, args.replicas, namespace=args.namespace, api=api)
    except ScaleError as err:
        print(f"moodbgm scale: {err}", file=sys.stderr)
        return 1
    print(result.describe())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``moodbgm scale QUEUE N [-n NS] [--kubeconfig F] [--context C]``; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="moodbgm scale", description="Set the replicas of the worker Deployment that consumes QUEUE."
    )
    _add_arguments(parser)
    return run_scale(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
