"""Kubernetes manifests: every overlay rendered with ``kubectl kustomize`` and validated strictly against
the Kubernetes 1.33 schemas (kubernetes-validate) and KEDA's ScaledObject model; then the properties a
cluster would only reveal at run time (selectors, probes, GPU placement, autoscalers...)."""

from __future__ import annotations

import base64
import copy
import re
import secrets
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from cloudcoil.models.keda.v1alpha1 import ScaledObject, TriggerAuthentication

from helpers import render_kustomization, render_overlay
from moodbgm.scale import QUEUES, QUEUES_ANNOTATION, RBAC_RULES

ROOT = Path(__file__).resolve().parents[1]
OVERLAYS = ("cpu", "gpu", "cpu-s3", "cpu-keda", "gpu-keda")
K8S_VERSION = "1.33.0"
NAMESPACE = "moodbgm"
# custom resources: no schema in kubernetes-validate; checked against their own model below
CRD_MODELS: dict[tuple[str, str], Any] = {
    ("keda.sh/v1alpha1", "ScaledObject"): ScaledObject,
    ("keda.sh/v1alpha1", "TriggerAuthentication"): TriggerAuthentication,
}
# Secrets the manifests use but never contain: created by the operator (k8s/README.md) or by
# components/secrets-from-files from uncommitted files; name -> keys
EXTERNAL_SECRETS = {
    "moodbgm-api-keys": {"MOODBGM_API_KEYS"},
    "moodbgm-redis": {"REDIS_PASSWORD"},
    "moodbgm-s3": {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"},
}
PLACEHOLDER = re.compile(r"replace|change.?me|example|placeholder|secret|password|<|xxx|todo", re.I)
# the broker's visibility timeout must exceed every worker's hard time limit; the grace period too
GRACE_MARGIN_S = 30
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
                if "configMapRef" in src:
                    assert ("ConfigMap", src["configMapRef"]["name"]) in names, src
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in EXTERNAL_SECRETS[ref["name"]], ref
            for src in container.get("envFrom", []):
                if "secretRef" in src:
                    assert src["secretRef"]["name"] in EXTERNAL_SECRETS, src
    for auth in _of(docs, "TriggerAuthentication"):
        for ref in auth["spec"]["secretTargetRef"]:
            assert ref["key"] in EXTERNAL_SECRETS[ref["name"]], ref


def _placeholders(docs: list[Doc]) -> list[str]:
    """Every value that looks like a placeholder: in Secrets (decoded), ConfigMaps and literal env."""
    found = []
    for secret in _of(docs, "Secret"):
        values = {**secret.get("stringData", {})}
        values.update({k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()})
        found += [
            f"secret/{secret['metadata']['name']} {k}={v}" for k, v in values.items() if PLACEHOLDER.search(v)
        ]
    for config in _of(docs, "ConfigMap"):
        found += [f"{k}={v}" for k, v in config["data"].items() if PLACEHOLDER.search(v)]
    for workload in _workloads(docs):
        for container in _containers(workload):
            for env in container.get("env", []):
                value = env.get("value", "").replace("$(REDIS_PASSWORD)", "")  # a reference, not a value
                if PLACEHOLDER.search(value):
                    found.append(f"{env['name']}={value}")
    return found


def test_nothing_secret_is_committed(docs: list[Doc]) -> None:
    """No overlay ships a Secret (the operator's own survives `kubectl apply -k`), and no value anywhere
    is a placeholder that would become a live credential."""
    assert not _of(docs, "Secret")
    assert _placeholders(docs) == []
    readme = (ROOT / "k8s" / "README.md").read_text()
    for name in EXTERNAL_SECRETS:
        assert f"create secret generic {name}" in readme, f"k8s/README.md must say how to create {name}"


def test_placeholder_check_catches_the_old_base_secret(rendered: dict[str, list[Doc]]) -> None:
    """Negative control: the placeholder Secret the base used to ship is caught."""
    old = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "moodbgm-api-keys"},
        "stringData": {"MOODBGM_API_KEYS": '["replace-me-with-a-long-random-key"]'},
    }
    assert _placeholders([*rendered["cpu"], old]) == [
        'secret/moodbgm-api-keys MOODBGM_API_KEYS=["replace-me-with-a-long-random-key"]'
    ]


def test_secrets_from_uncommitted_files(tmp_path: Path) -> None:
    """components/secrets-from-files: Secrets from local .env files that git ignores; the rendered
    Secrets carry exactly those values, and the committed examples are only examples."""
    component = ROOT / "k8s" / "components" / "secrets-from-files"
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", str(component / "redis.env")], cwd=ROOT, check=False
    )
    assert ignored.returncode == 0, "the real secret files must be gitignored"
    examples = sorted(p.name for p in component.glob("*.env.example"))
    assert examples == ["api-keys.env.example", "redis.env.example"]
    tree = tmp_path / "k8s"
    shutil.copytree(ROOT / "k8s", tree, ignore=shutil.ignore_patterns("*.env"))
    api_key, password = secrets.token_hex(32), secrets.token_hex(32)
    (tree / "components/secrets-from-files/api-keys.env").write_text(f'MOODBGM_API_KEYS=["{api_key}"]\n')
    (tree / "components/secrets-from-files/redis.env").write_text(f"REDIS_PASSWORD={password}\n")
    mine = tree / "overlays" / "mine"
    mine.mkdir()
    (mine / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: moodbgm\n"
        "resources: [../cpu-keda]\ncomponents: [../../components/secrets-from-files]\n"
    )
    docs = render_kustomization(mine)
    found = {
        s["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in s["data"].items()}
        for s in _of(docs, "Secret")
    }
    assert found == {
        "moodbgm-api-keys": {"MOODBGM_API_KEYS": f'["{api_key}"]'},
        "moodbgm-redis": {"REDIS_PASSWORD": password},
    }
    for doc in docs:
        _validate(doc)
    test_referenced_configmaps_secrets_and_claims_exist(docs)
    assert _placeholders(docs) == []


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


def test_prometheus_scrapes_the_keyless_metrics_port(docs: list[Doc]) -> None:
    """/metrics on the API port needs a key; the scrape annotations point at MOODBGM_METRICS_PORT,
    which the container exposes (and which is not the API port)."""
    api = _named(docs, "Deployment", "api")
    annotations = _pod(api)["metadata"]["annotations"]
    (container,) = _pod(api)["spec"]["containers"]
    port = int(_env(container)["MOODBGM_METRICS_PORT"])
    assert port != 8000
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == port
    assert annotations["prometheus.io/path"] == "/metrics"
    assert port in {p["containerPort"] for p in container["ports"]}


def _env(container: Doc) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def _config(docs: list[Doc]) -> dict[str, str]:
    (config,) = _of(docs, "ConfigMap")
    return dict(config["data"])


def test_workers_shut_down_warm_and_are_probed_with_celery_ping(docs: list[Doc]) -> None:
    visibility = int(_config(docs)["MOODBGM_BROKER_VISIBILITY_TIMEOUT_S"])
    for worker in _workers(docs):
        name = worker["metadata"]["name"]
        pod = _pod(worker)["spec"]
        (container,) = pod["containers"]
        env = _env(container)
        soft, hard = int(env["MOODBGM_TASK_SOFT_TIME_LIMIT_S"]), int(env["MOODBGM_TASK_TIME_LIMIT_S"])
        assert 0 < soft < hard < visibility, f"{name}: soft < hard < broker visibility timeout"
        # warm shutdown lets the running task reach its hard limit before the kubelet kills the pod
        assert pod["terminationGracePeriodSeconds"] >= hard + GRACE_MARGIN_S, name
        annotations = _pod(worker)["metadata"]["annotations"]
        assert annotations["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false", name
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


def test_api_drains_within_its_grace_period(docs: list[Doc]) -> None:
    api = _named(docs, "Deployment", "api")
    pod = _pod(api)["spec"]
    (container,) = pod["containers"]
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    drain = int(_env(container)["MOODBGM_SHUTDOWN_TIMEOUT_S"])
    assert pause >= 5, "the endpoint must leave the Service before uvicorn stops accepting"
    assert pause + drain < pod["terminationGracePeriodSeconds"], "uvicorn must finish before SIGKILL"
    assert drain >= 60, "long uploads and downloads need time to finish"


def test_storage_is_rwx_with_a_named_class_or_object_storage(docs: list[Doc]) -> None:
    """One storage choice per overlay: a ReadWriteMany claim of an explicit class (never the cluster's
    default, RWO on most clusters) mounted by every pod, or object storage with pod-local scratch."""
    config = _config(docs)
    assert config["MOODBGM_DATA_DIR"].startswith("/data/")
    claims = {c["metadata"]["name"]: c for c in _of(docs, "PersistentVolumeClaim")}
    for claim in claims.values():
        assert claim["spec"]["accessModes"] == ["ReadWriteMany"], claim["metadata"]["name"]
        assert claim["spec"]["storageClassName"], "the RWX storage class must be named"
    for deployment in _of(docs, "Deployment"):
        name = deployment["metadata"]["name"]
        (container,) = _containers(deployment)
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert "/data" in mounts and not mounts["/data"].get("readOnly"), name
        volumes = {v["name"]: v for v in _pod(deployment)["spec"]["volumes"]}
        data = volumes[mounts["/data"]["name"]]
        if config["MOODBGM_STORAGE"] == "local":
            assert data["persistentVolumeClaim"]["claimName"] == "moodbgm-data", name
        else:
            assert "emptyDir" in data, f"{name}: object storage needs only pod-local scratch"
            secret_refs = [s["secretRef"] for s in container["envFrom"] if "secretRef" in s]
            assert secret_refs == [{"name": "moodbgm-s3", "optional": True}], name
    if config["MOODBGM_STORAGE"] == "local":
        assert "moodbgm-data" in claims
    else:
        assert config["MOODBGM_STORAGE"] == "s3" and config["MOODBGM_S3_BUCKET"]
        assert config["MOODBGM_SCRATCH_DIR"].startswith("/data/")
        assert not claims, "object storage needs no PersistentVolumeClaim"


def _bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "kb": 1000, "mb": 2**20, "gb": 2**30}
    for unit, factor in units.items():
        if quantity.endswith(unit):
            return int(quantity[: -len(unit)]) * factor
    return int(quantity)


def test_redis_is_a_safe_broker(docs: list[Doc]) -> None:
    redis = _named(docs, "StatefulSet", "redis")
    (container,) = _containers(redis)
    args = container["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    assert args[args.index("--protected-mode") + 1] == "yes"
    # maxmemory (redis "mb" = MiB) about 70 % of the container limit: room for the AOF rewrite fork
    ratio = _bytes(args[args.index("--maxmemory") + 1]) / _bytes(container["resources"]["limits"]["memory"])
    assert 0.6 <= ratio <= 0.75, ratio
    password_ref = {"secretKeyRef": {"name": "moodbgm-redis", "key": "REDIS_PASSWORD"}}
    env = {e["name"]: e for e in container["env"]}
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    assert env["REDIS_PASSWORD"]["valueFrom"] == password_ref
    assert env["REDISCLI_AUTH"]["valueFrom"] == password_ref  # the probes' redis-cli logs in
    (claim,) = redis["spec"]["volumeClaimTemplates"]
    assert {"name": claim["metadata"]["name"], "mountPath": "/data"} in container["volumeMounts"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert "redis-cli -h 127.0.0.1 ping" in container[probe]["exec"]["command"][-1]
    assert redis["spec"]["serviceName"] in {s["metadata"]["name"] for s in _of(docs, "Service")}
    # every client of Redis (API, workers) uses the password; it is declared before it is expanded
    assert "MOODBGM_REDIS_URL" not in _config(docs)
    for deployment in _of(docs, "Deployment"):
        (client,) = _containers(deployment)
        names = [e["name"] for e in client["env"]]
        client_env = {e["name"]: e for e in client["env"]}
        assert client_env["REDIS_PASSWORD"]["valueFrom"] == password_ref
        url = client_env["MOODBGM_REDIS_URL"]["value"]
        assert url == f"redis://:$(REDIS_PASSWORD)@{redis['spec']['serviceName']}:6379/0"
        assert names.index("REDIS_PASSWORD") < names.index("MOODBGM_REDIS_URL")


def test_scale_service_account_has_exactly_what_moodbgm_scale_uses(docs: list[Doc]) -> None:
    role = _named(docs, "Role", "moodbgm-scale")
    granted = {
        (g, r, v)
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    assert granted == set(RBAC_RULES)
    binding = _named(docs, "RoleBinding", "moodbgm-scale")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "moodbgm-scale",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "moodbgm-scale", "namespace": NAMESPACE}
    ]
    assert _named(docs, "ServiceAccount", "moodbgm-scale")


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


@pytest.mark.parametrize("overlay", ["cpu", "cpu-keda", "cpu-s3"])
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
def test_keda_scales_every_worker_on_waiting_plus_running_tasks(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    """The metric counts running tasks too, so scale-in never takes the pods the work in hand needs."""
    docs = rendered[overlay]
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in _of(docs, "ScaledObject")}
    workers = {w["metadata"]["name"]: w for w in _workers(docs)}
    assert set(scaled) == set(workers)
    (redis_service,) = [s for s in _of(docs, "Service") if s["metadata"]["name"] == "redis"]
    port = redis_service["spec"]["ports"][0]["port"]
    (auth,) = _of(docs, "TriggerAuthentication")
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "password", "name": "moodbgm-redis", "key": "REDIS_PASSWORD"}
    ]
    (api_service,) = [s for s in _of(docs, "Service") if s["metadata"]["name"] == "api"]
    for name, obj in scaled.items():
        queues = _queues(workers[name])
        triggers = {t["name"]: t for t in obj["spec"]["triggers"]}
        waiting = [t for t in obj["spec"]["triggers"] if t["type"] == "redis"]
        assert tuple(t["metadata"]["listName"] for t in waiting) == queues, name
        for trigger in waiting:
            assert trigger["metadata"]["address"] == f"redis.{NAMESPACE}.svc.cluster.local:{port}"
            assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}
        running = triggers["running"]
        assert running["type"] == "metrics-api" and running["metadata"]["valueLocation"] == "running"
        assert running["metadata"]["url"] == (
            f"http://{api_service['metadata']['name']}.{NAMESPACE}.svc.cluster.local"
            f"/ops/queues?queues={','.join(queues)}"
        )
        modifiers = obj["spec"]["advanced"]["scalingModifiers"]
        assert sorted(modifiers["formula"].split(" + ")) == sorted(triggers), name
        assert int(modifiers["target"]) >= 1 and modifiers["metricType"] == "AverageValue"
        assert 0 <= obj["spec"]["minReplicaCount"] < obj["spec"]["maxReplicaCount"]
