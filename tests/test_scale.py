"""``moodbgm scale`` against a local fake Kubernetes API server (kmock): the real ``kubernetes`` client
sends real HTTP; the tests assert the requests it made (path, content type, PATCH body)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import kmock
import pytest
import yaml
from kubernetes import client

from helpers import render_overlay
from moodbgm import scale
from moodbgm.scale import ScaleError, ScaleResult, main, scale_queue

ROOT = Path(__file__).resolve().parents[1]
DEPLOYMENTS = "/apis/apps/v1/namespaces/moodbgm/deployments"
SCALED_OBJECTS = "/apis/keda.sh/v1alpha1/namespaces/moodbgm/scaledobjects"
NOT_FOUND = {"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404}

# every test here talks to kmock's in-process server through the plain RawHandler (no emulated state)
pytestmark = pytest.mark.kmock(cls=kmock.RawHandler)


def _deployment(name: str, queues: str, replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "moodbgm", "annotations": {scale.QUEUES_ANNOTATION: queues}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"x": name}}, "template": {}},
    }


def _deployment_list(*items: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "DeploymentList", "metadata": {}, "items": list(items)}


def _scale_reply(name: str, current: int) -> Any:
    """A reaction answering a scale PATCH the way the API server does: the Scale with the new spec."""

    def reply(req: kmock.Request) -> dict[str, Any]:
        return {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {"name": name, "namespace": "moodbgm"},
            "spec": {"replicas": req.data["spec"]["replicas"]},
            "status": {"replicas": current, "selector": f"x={name}"},
        }

    return reply


def _api(server: kmock.RawHandler) -> client.AppsV1Api:
    config = client.Configuration(host=str(server.url).rstrip("/"))
    config.retries = 0
    return client.AppsV1Api(client.ApiClient(config))


def _scaled_objects(*targets: str) -> dict[str, Any]:
    items = [
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": {"name": f"so-{t}", "namespace": "moodbgm"},
            "spec": {"scaleTargetRef": {"name": t}},
        }
        for t in targets
    ]
    return {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObjectList", "metadata": {}, "items": items}


def _apps_calls(server: kmock.RawHandler) -> list[kmock.Request]:
    return [req for req in server if req.url.path.startswith("/apis/apps/")]


CPU_WORKERS = _deployment_list(
    _deployment("worker-media", "media", 2),
    _deployment("worker-nlp", "stt,nlp", 1),
    _deployment("worker-generate", "generate", 1),
)


@pytest.mark.asyncio
async def test_scale_patches_the_scale_subresource_of_the_queues_deployment(kmock: kmock.RawHandler) -> None:
    kmock[f"get {DEPLOYMENTS}"] << CPU_WORKERS
    kmock[f"get {SCALED_OBJECTS}"] << 404 << NOT_FOUND
    kmock[f"patch {DEPLOYMENTS}/worker-nlp/scale"] << _scale_reply("worker-nlp", current=1)

    result = await asyncio.to_thread(scale_queue, "stt", 3, api=_api(kmock))

    assert result == ScaleResult(
        queue="stt",
        namespace="moodbgm",
        deployment="worker-nlp",
        replicas=3,
        previous=1,
        queues=("stt", "nlp"),
    )
    assert "also serves nlp" in result.describe()
    listing, patch = _apps_calls(kmock)
    assert listing.method == kmock.method.GET
    assert listing.params["labelSelector"] == scale.WORKER_SELECTOR
    assert patch.method == kmock.method.PATCH
    assert patch.url.path == f"{DEPLOYMENTS}/worker-nlp/scale"
    assert patch.headers["Content-Type"] == "application/merge-patch+json"
    assert patch.data == {"spec": {"replicas": 3}}


@pytest.mark.asyncio
async def test_scale_to_zero_and_other_namespace(kmock: kmock.RawHandler) -> None:
    deployments = "/apis/apps/v1/namespaces/staging/deployments"
    kmock[f"get {deployments}"] << _deployment_list(_deployment("worker-generate", "generate", 2))
    kmock["get /apis/keda.sh/v1alpha1/namespaces/staging/scaledobjects"] << _scaled_objects("other")
    kmock[f"patch {deployments}/worker-generate/scale"] << _scale_reply("worker-generate", current=2)

    result = await asyncio.to_thread(scale_queue, "generate", 0, "staging", _api(kmock))

    assert (result.deployment, result.replicas, result.previous) == ("worker-generate", 0, 2)
    assert list(kmock)[-1].data == {"spec": {"replicas": 0}}


@pytest.mark.asyncio
async def test_main_uses_the_kubeconfig_and_prints_the_change(
    kmock: kmock.RawHandler, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kmock[f"get {DEPLOYMENTS}"] << CPU_WORKERS
    kmock[f"get {SCALED_OBJECTS}"] << 404 << NOT_FOUND
    kmock[f"patch {DEPLOYMENTS}/worker-media/scale"] << _scale_reply("worker-media", current=2)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": str(kmock.url).rstrip("/")}}],
                "users": [{"name": "me", "user": {"token": "s3cret"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "me"}}],
                "current-context": "fake",
            }
        )
    )

    code = await asyncio.to_thread(main, ["media", "5", "--kubeconfig", str(kubeconfig)])

    assert code == 0
    assert "deployment/worker-media in moodbgm: replicas 2 -> 5" in capsys.readouterr().out
    patch = list(kmock)[-1]
    assert patch.headers["Authorization"] == "Bearer s3cret"
    assert patch.data == {"spec": {"replicas": 5}}


@pytest.mark.asyncio
async def test_api_refusal_becomes_a_clear_error(
    kmock: kmock.RawHandler, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = {
        "apiVersion": "v1",
        "kind": "Status",
        "status": "Failure",
        "reason": "Forbidden",
        "code": 403,
        "message": 'deployments.apps "worker-media" is forbidden: User "me" cannot patch resource',
    }
    kmock[f"get {DEPLOYMENTS}"] << CPU_WORKERS
    kmock[f"get {SCALED_OBJECTS}"] << 404 << NOT_FOUND
    kmock[f"patch {DEPLOYMENTS}/worker-media/scale"] << 403 << status

    with pytest.raises(ScaleError, match=r"worker-media.*HTTP 403: .*cannot patch resource"):
        await asyncio.to_thread(scale_queue, "media", 4, api=_api(kmock))


@pytest.mark.asyncio
async def test_no_or_several_deployments_for_a_queue(kmock: kmock.RawHandler) -> None:
    kmock[f"get {DEPLOYMENTS}"] << _deployment_list(
        _deployment("worker-media", "media"),
        _deployment("worker-a", "nlp"),
        _deployment("worker-b", "stt, nlp"),
    )
    api = _api(kmock)

    with pytest.raises(ScaleError, match=r"no worker Deployment .* queue 'generate'"):
        await asyncio.to_thread(scale_queue, "generate", 1, api=api)
    with pytest.raises(ScaleError, match=r"several Deployments \(worker-a, worker-b\)"):
        await asyncio.to_thread(scale_queue, "nlp", 1, api=api)
    assert all(req.method == kmock.method.GET for req in kmock)  # nothing was patched


@pytest.mark.parametrize(
    ("overlay", "queue", "expected"), [("cpu", "stt", "worker-nlp"), ("gpu", "stt", "worker-stt")]
)
@pytest.mark.asyncio
async def test_scale_finds_the_deployment_in_the_rendered_manifests(
    kmock: kmock.RawHandler, overlay: str, queue: str, expected: str
) -> None:
    """The annotation contract between k8s/ and scale.py: served from the real rendered Deployments."""
    workers = [
        doc
        for doc in render_overlay(overlay)
        if doc["kind"] == "Deployment"
        and doc["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"
    ]
    kmock[f"get {DEPLOYMENTS}"] << json.loads(json.dumps(_deployment_list(*workers)))
    kmock[f"get {SCALED_OBJECTS}"] << _scaled_objects()
    kmock[f"patch {DEPLOYMENTS}/{expected}/scale"] << _scale_reply(expected, current=1)

    result = await asyncio.to_thread(scale_queue, queue, 2, api=_api(kmock))

    assert result.deployment == expected
    assert list(kmock)[-1].url.path == f"{DEPLOYMENTS}/{expected}/scale"


@pytest.mark.asyncio
async def test_keda_owned_deployment_is_refused_with_a_clear_message(
    kmock: kmock.RawHandler, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """KEDA would undo a plain scale at its next poll: refuse (exit 3) and change nothing."""
    kmock[f"get {DEPLOYMENTS}"] << CPU_WORKERS
    kmock[f"get {SCALED_OBJECTS}"] << _scaled_objects("worker-media")

    with pytest.raises(scale.AutoscaledError, match=r"autoscaled by KEDA \(scaledobject/so-worker-media\)"):
        await asyncio.to_thread(scale_queue, "media", 4, api=_api(kmock))
    code = await asyncio.to_thread(main, ["media", "4", "--kubeconfig", str(_kubeconfig(kmock, tmp_path))])
    assert code == 3
    assert "--pause-autoscaler" in capsys.readouterr().err
    assert all(req.method == kmock.method.GET for req in kmock)  # nothing was patched


@pytest.mark.asyncio
async def test_pause_autoscaler_pauses_keda_at_the_count_then_scales(
    kmock: kmock.RawHandler, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kmock[f"get {DEPLOYMENTS}"] << CPU_WORKERS
    kmock[f"get {SCALED_OBJECTS}"] << _scaled_objects("worker-nlp", "worker-media")
    kmock[f"patch {SCALED_OBJECTS}/so-worker-media"] << {"metadata": {"name": "so-worker-media"}}
    kmock[f"patch {DEPLOYMENTS}/worker-media/scale"] << _scale_reply("worker-media", current=2)

    kubeconfig = _kubeconfig(kmock, tmp_path)
    code = await asyncio.to_thread(
        main, ["media", "0", "--kubeconfig", str(kubeconfig), "--pause-autoscaler"]
    )

    assert code == 0
    out = capsys.readouterr().out
    assert "KEDA scaledobject/so-worker-media paused at 0" in out
    assert f"{scale.PAUSED_REPLICAS_ANNOTATION}-" in out  # how to resume
    pause, patch = [req for req in kmock if req.method == kmock.method.PATCH]
    assert pause.url.path == f"{SCALED_OBJECTS}/so-worker-media"
    assert pause.data == {"metadata": {"annotations": {scale.PAUSED_REPLICAS_ANNOTATION: "0"}}}
    assert patch.url.path == f"{DEPLOYMENTS}/worker-media/scale" and patch.data == {"spec": {"replicas": 0}}


def _kubeconfig(server: kmock.RawHandler, tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": str(server.url).rstrip("/")}}],
                "users": [{"name": "me", "user": {"token": "s3cret"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "me"}}],
                "current-context": "fake",
            }
        )
    )
    return path


def test_unreachable_cluster_is_a_scale_error() -> None:
    config = client.Configuration(host="http://127.0.0.1:9")  # discard port: connection refused
    config.retries = 0
    with pytest.raises(ScaleError, match="cannot list worker deployments in moodbgm"):
        scale_queue("media", 1, api=client.AppsV1Api(client.ApiClient(config)))


class _NoCalls:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the API was called ({name}) for an invalid request")


@pytest.mark.parametrize(
    ("queue", "replicas", "message"),
    [("video", 1, "unknown queue 'video'"), ("media", -1, "between 0 and"), ("media", True, "integer")],
)
def test_invalid_requests_raise_value_error_before_any_call(queue: str, replicas: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        scale_queue(queue, replicas, api=_NoCalls())


def test_cli_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(["video", "2"])
    assert excinfo.value.code == 2
    assert "invalid choice: 'video'" in capsys.readouterr().err
    assert main(["media", "-3", "--kubeconfig", "/nonexistent"]) == 2
    assert "between 0 and" in capsys.readouterr().err


def test_missing_kubeconfig_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["media", "1", "--kubeconfig", str(tmp_path / "missing")]) == 1
    assert "cannot load kubeconfig" in capsys.readouterr().err
