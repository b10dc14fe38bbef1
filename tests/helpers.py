"""Small builders shared by several test modules (import as ``from helpers import ...``)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from moodbgm.types import Section, Timeline

ROOT = Path(__file__).resolve().parents[1]


def timeline(*spans: tuple[float, str]) -> Timeline:
    """A timeline from consecutive (length, emotion) sections starting at 0."""
    sections, t = [], 0.0
    for length, emotion in spans:
        sections.append(Section(t, t + length, emotion))
        t += length
    return Timeline(t, tuple(sections))


def render_overlay(overlay: str) -> list[dict[str, Any]]:
    """The objects of ``k8s/overlays/<overlay>`` rendered by kubectl's built-in kustomize."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    out = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "k8s" / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]
