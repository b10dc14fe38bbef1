"""``moodbgm scale QUEUE N``: set the replica count of the worker Deployment that consumes a Celery queue.

Which Deployment serves which queue is read from the cluster, not hard-coded: every worker Deployment of
the kustomize manifests (``k8s/``) carries the label ``app.kubernetes.io/component=worker`` and the
annotation ``moodbgm.io/queues`` (e.g. ``"stt,nlp"``), and the overlays differ (the ``gpu`` overlay moves
``stt`` to its own GPU Deployment). The replica count is written through the Deployment's ``scale``
subresource with a merge patch, exactly what ``kubectl scale`` does.

A Deployment owned by a KEDA ``ScaledObject`` (``k8s/components/keda``) would be scaled back at KEDA's
next poll, so ``scale`` looks for one first and either refuses (the default, with a message that says
so) or, with ``pause_autoscaler``, pauses it at the count asked for: the annotation
``autoscaling.keda.sh/paused-replicas: "N"`` makes KEDA set N replicas and stop autoscaling until the
annotation is removed. ``RBAC_RULES`` lists every call this module makes; the Role in
``k8s/base/rbac.yaml`` grants exactly those (checked by ``tests/test_k8s.py``).
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
KEDA_GROUP, KEDA_VERSION, KEDA_PLURAL = "keda.sh", "v1alpha1", "scaledobjects"
PAUSED_REPLICAS_ANNOTATION = "autoscaling.keda.sh/paused-replicas"
# (API group, resource, verb) of every call below: the in-cluster Role grants exactly these
RBAC_RULES: tuple[tuple[str, str, str], ...] = (
    ("apps", "deployments", "list"),
    ("apps", "deployments/scale", "patch"),
    (KEDA_GROUP, KEDA_PLURAL, "list"),
    (KEDA_GROUP, KEDA_PLURAL, "patch"),
)


class ScaleError(MoodbgmError):
    """The cluster could not be reached or refused the change; the message says what it answered."""


class AutoscaledError(ScaleError):
    """The Deployment is owned by a KEDA ScaledObject: a plain scale would be undone at its next poll."""


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
    paused_autoscaler: str | None = None  # the KEDA ScaledObject paused at ``replicas``, if any

    def describe(self) -> str:
        shared = [q for q in self.queues if q != self.queue]
        also = f" (also serves {', '.join(shared)})" if shared else ""
        before = "?" if self.previous is None else str(self.previous)
        line = f"deployment/{self.deployment} in {self.namespace}: replicas {before} -> {self.replicas}{also}"
        if self.paused_autoscaler:
            so = f"scaledobject/{self.paused_autoscaler}"
            line += (
                f"; KEDA {so} paused at {self.replicas} (resume: "
                f"kubectl -n {self.namespace} annotate {so} {PAUSED_REPLICAS_ANNOTATION}-)"
            )
        return line


def parse_queues(annotation: str | None) -> tuple[str, ...]:
    """``"stt, nlp"`` -> ``("stt", "nlp")``; empty or missing -> ``()``."""
    if not annotation:
        return ()
    return tuple(q.strip() for q in annotation.split(",") if q.strip())


def load_apps_api(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """An ``AppsV1Api`` for the kubeconfig (``kubeconfig``/``context``, else the default file), or,
    when there is none, for the in-cluster service account (``moodbgm-scale`` in ``k8s/base/rbac.yaml``).
    Raises ``ScaleError`` if neither works."""
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


def find_scaled_object(custom: Any, deployment: str, namespace: str) -> str | None:
    """The name of the KEDA ScaledObject that targets ``deployment``, or None (none, or no KEDA)."""
    from kubernetes.client.exceptions import ApiException

    try:
        listing = custom.list_namespaced_custom_object(
            KEDA_GROUP, KEDA_VERSION, namespace, KEDA_PLURAL, _request_timeout=REQUEST_TIMEOUT_S
        )
    except ApiException as err:
        if err.status == 404:  # the ScaledObject kind is not installed: KEDA is not there
            return None
        raise ScaleError(f"cannot list KEDA scaledobjects in {namespace}: {_api_message(err)}") from err
    except Exception as err:
        raise ScaleError(f"cannot list KEDA scaledobjects in {namespace}: {_api_message(err)}") from err
    for obj in listing.get("items") or []:
        target = (obj.get("spec") or {}).get("scaleTargetRef") or {}
        if target.get("name") == deployment and target.get("kind", "Deployment") == "Deployment":
            return str(obj["metadata"]["name"])
    return None


def pause_scaled_object(custom: Any, name: str, namespace: str, replicas: int) -> None:
    """Pause KEDA's autoscaling of ``name`` at ``replicas`` (it sets them itself and stops polling)."""
    body = {"metadata": {"annotations": {PAUSED_REPLICAS_ANNOTATION: str(replicas)}}}
    try:
        custom.patch_namespaced_custom_object(
            KEDA_GROUP, KEDA_VERSION, namespace, KEDA_PLURAL, name, body, _request_timeout=REQUEST_TIMEOUT_S
        )
    except Exception as err:
        raise ScaleError(f"cannot pause scaledobject/{name} in {namespace}: {_api_message(err)}") from err


def scale_queue(
    queue: str,
    replicas: int,
    namespace: str = DEFAULT_NAMESPACE,
    api: Any = None,
    *,
    custom_api: Any = None,
    pause_autoscaler: bool = False,
) -> ScaleResult:
    """Set the replicas of the worker Deployment consuming ``queue``.

    ``api`` is a ``kubernetes.client.AppsV1Api``; ``None`` loads the kubeconfig / in-cluster config.
    ``custom_api`` (a ``CustomObjectsApi``, default: on ``api``'s client) looks for a KEDA ScaledObject
    on the Deployment: then this raises ``AutoscaledError``, or with ``pause_autoscaler`` pauses it at
    ``replicas`` before scaling. Raises ``ValueError`` for an unknown queue or a bad count and
    ``ScaleError`` when the API fails.
    """
    request = ScaleRequest(queue=queue, replicas=replicas, namespace=namespace)
    if api is None:
        api = load_apps_api()
    name, queues, previous = find_deployment(api, request.queue, request.namespace)
    if custom_api is None:
        from kubernetes import client

        custom_api = client.CustomObjectsApi(api.api_client)
    autoscaler = find_scaled_object(custom_api, name, request.namespace)
    if autoscaler is not None:
        if not pause_autoscaler:
            raise AutoscaledError(
                f"deployment/{name} is autoscaled by KEDA (scaledobject/{autoscaler}): KEDA would undo "
                f"this at its next poll. Change the ScaledObject's min/maxReplicaCount instead, or pass "
                f"--pause-autoscaler to pause KEDA at {request.replicas} replicas"
            )
        pause_scaled_object(custom_api, autoscaler, request.namespace, request.replicas)
        log.info("paused scaledobject/%s at %d replicas", autoscaler, request.replicas)
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
        paused_autoscaler=autoscaler,
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
    parser.add_argument(
        "--pause-autoscaler",
        action="store_true",
        help="if KEDA autoscales the Deployment, pause it at REPLICAS (annotation "
        f"{PAUSED_REPLICAS_ANNOTATION}) instead of refusing",
    )


def run_scale(args: argparse.Namespace) -> int:
    """Run a parsed ``scale`` command: 0 done, 2 bad request, 3 refused (KEDA owns the Deployment),
    1 the cluster failed."""
    try:
        ScaleRequest(queue=args.queue, replicas=args.replicas, namespace=args.namespace)
    except ValueError as err:
        print(f"moodbgm scale: {err}", file=sys.stderr)
        return 2
    try:
        api = load_apps_api(args.kubeconfig, args.context)
        result = scale_queue(
            args.queue,
            args.replicas,
            namespace=args.namespace,
            api=api,
            pause_autoscaler=args.pause_autoscaler,
        )
    except AutoscaledError as err:
        print(f"moodbgm scale: {err}", file=sys.stderr)
        return 3
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
