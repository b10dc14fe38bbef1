"""Kubernetes manifests: every overlay rendered with ``kubectl kustomize`` and validated strictly against
the Kubernetes 1.33 schemas (kubernetes-validate) and KEDA's ScaledObject model; then the properties a
cluster would only reveal at run time (selectors, probes, GPU placement, autoscalers...)."""

from __future__ import annotations

import copy
import re
from collections import Counter
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from cloudcoil.models.keda.v1alpha1 import ScaledObject

from helpers import render_overlay
from moodbgm.scale import QUEUES, QUEUES_ANNOTATION

ROOT = Path(__file__).resolve().parents[1]
OVERLAYS = ("cpu", "gpu", "cpu-keda", "gpu-keda")
K8S_VERSION = "1.33.0"
NAMESPACE = "moodbgm"
# custom resources: no schema in kubernetes-validate; checked against their own model below
CRD_MODELS: dict[tuple[str, str], Any] = {("keda.sh/v1alpha1", "ScaledObject"): ScaledObject}
WORKLOADS = ("Deployment", "StatefulSet", "Job")
GPU = "nvidia.com/gpu"

Doc = dict[str, Any]


def _render(overlay: str) -> list[Doc]:
    return render_overlay(overlay)


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Doc]]:
    return {overlay: _render(overlay) for overlay in OVERLAYS}


@pytest.fixture(params=OVERLAYS)
def docs(request: pytest.FixtureRequest, rendered: dict[str, list[Doc]]) -> list[Doc]:
    return rendered[request.param]


def _of(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def _named(docs: list[Doc], kind: str, name: str) -> Doc:
    (doc,) = [d for d in _of(docs, kind) if d["metadata"]["name"] == name]
    return doc


def _workloads(docs: list[Doc]) -> list[Doc]:
    return [d for d in docs if d["kind"] in WORKLOADS]


def _pod(doc: Doc) -> Doc:
    return doc["spec"]["template"]


def _containers(doc: Doc) -> list[Doc]:
    spec = _pod(doc)["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def _workers(docs: list[Doc]) -> list[Doc]:
    return [
        d
        for d in _of(docs, "Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"
    ]


def _queues(deployment: Doc) -> tuple[str, ...]:
    return tuple(q.strip() for q in deployment["metadata"]["annotations"][QUEUES_ANNOTATION].split(","))


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _validate_crd(doc: Doc) -> None:
    """Validate against the CRD's model with unknown fields forbidden: the model drops what it does not
    know, so a lossless round trip means every field is known and well-typed."""
    model = CRD_MODELS[(doc["apiVersion"], doc["kind"])]
    parsed = model.model_validate(doc)
    assert parsed.model_dump(mode="json", by_alias=True, exclude_unset=True) == doc, (
        "unknown or mistyped fields"
    )


def _validate(doc: Doc) -> None:
    if (doc["apiVersion"], doc["kind"]) in CRD_MODELS:
        _validate_crd(doc)
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)  # raises SchemaNotFoundError for CRDs


# ----------------------------------------------------------------------------------------------- schema


def test_every_object_validates_strictly(docs: list[Doc]) -> None:
    for doc in docs:
        _validate(doc)


def test_strict_validation_rejects_unknown_fields(rendered: dict[str, list[Doc]]) -> None:
    """Negative controls: the validators used above do fail on a misspelt field or an unknown kind."""
    dep = copy.deepcopy(_named(rendered["cpu"], "Deployment", "worker-media"))
    dep["spec"]["template"]["spec"]["containers"][0]["resource"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(dep)
    so = copy.deepcopy(_named(rendered["cpu-keda"], "ScaledObject", "worker-media"))
    so["spec"]["minReplicas"] = 1
    with pytest.raises(AssertionError, match="unknown or mistyped"):
        _validate(so)
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        _validate({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})


def test_everything_lives_in_the_namespace_and_is_labelled(docs: list[Doc]) -> None:
    for doc in docs:
        meta = doc["metadata"]
        assert meta["labels"]["app.kubernetes.io/part-of"] == "moodbgm", meta["name"]
        if doc["kind"] != "Namespace":
            assert meta.get("namespace") == NAMESPACE, f"{doc['kind']}/{meta['name']}"
    for workload in _workloads(docs):
        assert _pod(workload)["metadata"]["labels"]["app.kubernetes.io/part-of"] == "moodbgm"
    (ns,) = _of(docs, "Namespace")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# ------------------------------------------------------------------------------------- selectors & refs


def test_selectors_match_their_pod_labels(docs: list[Doc]) -> None:
    for workload in (d for d in _workloads(docs) if d["kind"] != "Job"):
        selector = workload["spec"]["selector"]["matchLabels"]
        assert _matches(selector, _pod(workload)["metadata"]["labels"]), workload["metadata"]["name"]
    pod_labels = [_pod(w)["metadata"]["labels"] for w in _workloads(docs)]
    # no two controllers may claim the same pods
    controllers = [d for d in _workloads(docs) if d["kind"] != "Job"]
    for a in controllers:
        owners = [
            b
            for b in controllers
            if _matches(a["spec"]["selector"]["matchLabels"], _pod(b)["metadata"]["labels"])
        ]
        assert owners == [a], a["metadata"]["name"]
    for pdb in _of(docs, "PodDisruptionBudget"):
        assert any(_matches(pdb["spec"]["selector"]["matchLabels"], labels) for labels in pod_labels), pdb


def test_services_select_existing_pods_and_ports(docs: list[Doc]) -> None:
    for svc in _of(docs, "Service"):
        targets = [
            w for w in _workloads(docs) if _matches(svc["spec"]["selector"], _pod(w)["metadata"]["labels"])
        ]
        assert targets, f"service/{svc['metadata']['name']} selects no pods"
        port_names = {p["name"] for w in targets for c in _containers(w) for p in c.get("ports", [])}
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in port_names, port
    services = {s["metadata"]["name"]: s for s in _of(docs, "Service")}
    for ingress in _of(docs, "Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                assert backend["port"]["name"] in {
                    p["name"] for p in services[backend["name"]]["spec"]["ports"]
                }


def test_referenced_configmaps_secrets_and_claims_exist(docs: list[Doc]) -> None:
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for workload in _workloads(docs):
        spec = _pod(workload)["spec"]
        for vol in spec.get("volumes", []):
            if "persistentVolumeClaim" in vol:
                assert ("PersistentVolumeClaim", vol["persistentVolumeClaim"]["claimName"]) in names, vol
        for container in _containers(workload):
            for src in container.get("envFrom", []):
                assert ("ConfigMap", src["configMapRef"]["name"]) in names, src
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    (secret,) = [d for d in _of(docs, "Secret") if d["metadata"]["name"] == ref["name"]]
                    assert ref["key"] in secret.get("stringData", secret.get("data", {}))


def test_redis_network_policy_admits_every_moodbgm_pod(docs: list[Doc]) -> None:
    (policy,) = _of(docs, "NetworkPolicy")
    redis = _named(docs, "StatefulSet", "redis")
    assert _matches(policy["spec"]["podSelector"]["matchLabels"], _pod(redis)["metadata"]["labels"])
    allowed = policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    for workload in _workloads(docs):
        assert _matches(allowed, _pod(workload)["metadata"]["labels"]), workload["metadata"]["name"]


# ------------------------------------------------------------------------------------- pods & containers


def test_no_latest_or_untagged_images(docs: list[Doc]) -> None:
    for workload in _workloads(docs):
        for container in _containers(workload):
            image = container["image"]
            assert "@sha256:" in image or re.search(r":[\w][\w.-]*$", image.rsplit("/", 1)[-1]), image
            assert not image.endswith(":latest"), image


def test_every_container_is_bounded_and_unprivileged(docs: list[Doc]) -> None:
    for workload in _workloads(docs):
        name = workload["metadata"]["name"]
        pod = _pod(workload)["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] > 0, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod["automountServiceAccountToken"] is False, name
        tmp_volumes = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        for container in _containers(workload):
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), f"{name}: {bound}"
            ctx = container["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False, name
            assert ctx["capabilities"]["drop"] == ["ALL"], name
            assert ctx["readOnlyRootFilesystem"] is True, name
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts.get("/tmp") in tmp_volumes, f"{name}: a read-only root needs an emptyDir /tmp"


def test_api_probes_and_ingress(docs: list[Doc]) -> None:
    (api,) = _containers(_named(docs, "Deployment", "api"))
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["args"] == ["serve", "--host", "0.0.0.0", "--port", "8000"]
    env = {e["name"]: e for e in api["env"]}
    assert env["MOODBGM_API_KEYS"]["valueFrom"]["secretKeyRef"]["name"] == "moodbgm-api-keys"
    annotations = _named(docs, "Ingress", "moodbgm")["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == "1g"
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 300


def test_workers_shut_down_warm_and_are_probed_with_celery_ping(docs: list[Doc]) -> None:
    for worker in _workers(docs):
        name = worker["metadata"]["name"]
        pod = _pod(worker)["spec"]
        assert pod["terminationGracePeriodSeconds"] > 30 * 60, f"{name}: shorter than the longest task"
        (container,) = pod["containers"]
        # Celery itself is PID 1 (no shell, no init in front of it) and consumes the annotated queues
        command = container["command"]
        assert command[:2] == ["moodbgm", "worker"], name
        assert "args" not in container, name
        assert tuple(command[command.index("--queues") + 1].split(",")) == _queues(worker), name
        for probe_name in ("startupProbe", "livenessProbe"):
            probe = container[probe_name]
            script = probe["exec"]["command"][-1]
            assert "celery -A moodbgm.worker.app inspect ping" in script, f"{name}: {probe_name}"
            assert '-d "celery@$HOSTNAME"' in script and script.startswith("exec ")
            timeout = float(re.search(r"--timeout (\d+)", script).group(1))  # type: ignore[union-attr]
            assert probe["timeoutSeconds"] > timeout, f"{name}: the probe must outlive the ping"
            assert probe["periodSeconds"] >= probe["timeoutSeconds"]
        startup = container["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, f"{name}: room to load models"


def test_shared_data_volume_is_read_write_many(docs: list[Doc]) -> None:
    pvc = _named(docs, "PersistentVolumeClaim", "moodbgm-data")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    (config,) = _of(docs, "ConfigMap")
    assert config["data"]["MOODBGM_DATA_DIR"].startswith("/data/")
    for deployment in _of(docs, "Deployment"):
        (container,) = _containers(deployment)
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert "/data" in mounts and not mounts["/data"].get("readOnly"), deployment["metadata"]["name"]


def test_redis_persists_and_is_probed(docs: list[Doc]) -> None:
    redis = _named(docs, "StatefulSet", "redis")
    (container,) = _containers(redis)
    args = container["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    (claim,) = redis["spec"]["volumeClaimTemplates"]
    assert {"name": claim["metadata"]["name"], "mountPath": "/data"} in container["volumeMounts"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert "redis-cli -h 127.0.0.1 ping" in container[probe]["exec"]["command"][-1]
    assert redis["spec"]["serviceName"] in {s["metadata"]["name"] for s in _of(docs, "Service")}
    (config,) = _of(docs, "ConfigMap")
    assert config["data"]["MOODBGM_REDIS_URL"] == f"redis://{redis['spec']['serviceName']}:6379/0"


# ---------------------------------------------------------------------------------------- queues & GPUs


def test_each_queue_has_exactly_one_worker_deployment(docs: list[Doc]) -> None:
    served = Counter(q for worker in _workers(docs) for q in _queues(worker))
    assert served == Counter(QUEUES)


@pytest.mark.parametrize("overlay", ["gpu", "gpu-keda"])
def test_gpu_overlay_puts_stt_and_generate_on_gpu_nodes(rendered: dict[str, list[Doc]], overlay: str) -> None:
    docs = rendered[overlay]
    (config,) = _of(docs, "ConfigMap")
    assert config["data"]["MOODBGM_GENERATOR"] == "riffusion"
    assert config["data"]["MOODBGM_RIFFUSION_MODEL"].startswith("/models/")
    for worker in _workers(docs):
        pod = _pod(worker)["spec"]
        (container,) = pod["containers"]
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        on_gpu = bool({"stt", "generate"} & set(_queues(worker)))
        assert (GPU in container["resources"]["limits"]) is on_gpu, worker["metadata"]["name"]
        if on_gpu:
            assert container["resources"]["limits"][GPU] == "1"
            assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
            assert {"key": GPU, "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
            assert container["image"].startswith("ghcr.io/moodbgm/moodbgm-gpu:")
            assert env["MOODBGM_DEVICE"] == "cuda"
            models = next(m for m in container["volumeMounts"] if m["mountPath"] == "/models")
            assert models["readOnly"] is True
        else:
            assert "-gpu:" not in container["image"] and "nodeSelector" not in pod
    job = _named(docs, "Job", "model-download")
    (download,) = _containers(job)
    assert "riffusion/riffusion-model-v1" in download["command"][-1]
    assert {"name": "HF_HUB_OFFLINE", "value": "0"} in download["env"]
    mounts = {m["mountPath"]: m for m in download["volumeMounts"]}
    assert not mounts["/models"].get("readOnly")


@pytest.mark.parametrize("overlay", ["cpu", "cpu-keda"])
def test_cpu_overlay_needs_no_gpu(rendered: dict[str, list[Doc]], overlay: str) -> None:
    docs = rendered[overlay]
    (config,) = _of(docs, "ConfigMap")
    assert (config["data"]["MOODBGM_GENERATOR"], config["data"]["MOODBGM_DEVICE"]) == ("composer", "cpu")
    for workload in _workloads(docs):
        for container in _containers(workload):
            assert GPU not in container["resources"]["limits"] and "-gpu" not in container["image"]
    assert not _of(docs, "Job")


# ---------------------------------------------------------------------------------------- autoscaling


def test_one_autoscaler_per_deployment(docs: list[Doc]) -> None:
    targets = [
        (h["spec"]["scaleTargetRef"]["kind"], h["spec"]["scaleTargetRef"]["name"])
        for h in _of(docs, "HorizontalPodAutoscaler")
    ]
    assert targets == [("Deployment", "api")]
    targets += [("Deployment", s["spec"]["scaleTargetRef"]["name"]) for s in _of(docs, "ScaledObject")]
    assert len(targets) == len(set(targets)), targets
    deployments = {("Deployment", d["metadata"]["name"]) for d in _of(docs, "Deployment")}
    assert set(targets) <= deployments
    for kind, name in targets:  # an autoscaled Deployment leaves replicas to its autoscaler
        assert "replicas" not in _named(docs, kind, name)["spec"], name


@pytest.mark.parametrize("overlay", ["cpu-keda", "gpu-keda"])
def test_keda_scales_every_worker_on_its_queues(rendered: dict[str, list[Doc]], overlay: str) -> None:
    docs = rendered[overlay]
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in _of(docs, "ScaledObject")}
    workers = {w["metadata"]["name"]: w for w in _workers(docs)}
    assert set(scaled) == set(workers)
    (redis_service,) = [s for s in _of(docs, "Service") if s["metadata"]["name"] == "redis"]
    port = redis_service["spec"]["ports"][0]["port"]
    for name, obj in scaled.items():
        triggers = obj["spec"]["triggers"]
        assert {t["type"] for t in triggers} == {"redis"}
        assert tuple(t["metadata"]["listName"] for t in triggers) == _queues(workers[name]), name
        for trigger in triggers:
            assert trigger["metadata"]["address"] == f"redis.{NAMESPACE}.svc.cluster.local:{port}"
            assert int(trigger["metadata"]["listLength"]) >= 1
        assert 0 <= obj["spec"]["minReplicaCount"] < obj["spec"]["maxReplicaCount"]
