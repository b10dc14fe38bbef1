"""docs/ARCHITECTURE.md stays true: its stage table is the code's Stage table."""

from __future__ import annotations

from pathlib import Path

from moodbgm.stages import STAGES

DOC = Path(__file__).resolve().parents[1] / "docs" / "ARCHITECTURE.md"
COLUMNS = ["stage", "inputs", "outputs", "optional", "options", "settings", "model", "queue"]


def doc_table() -> list[dict[str, str]]:
    lines = DOC.read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("| stage |"))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    assert header == COLUMNS
    rows = []
    for ln in lines[start + 2 :]:
        if not ln.startswith("|"):
            break
        rows.append(dict(zip(header, (c.strip() for c in ln.strip().strip("|").split("|")), strict=True)))
    return rows


def code_table() -> list[dict[str, str]]:
    return [
        {
            "stage": s.name,
            "inputs": ", ".join(s.inputs),
            "outputs": ", ".join(s.outputs),
            "optional": ", ".join(s.optional),
            "options": ", ".join(s.options),
            "settings": ", ".join(s.settings),
            "model": s.model or "",
            "queue": s.queue,
        }
        for s in STAGES
    ]


def test_stage_table_matches_the_code() -> None:
    assert doc_table() == code_table()


def test_names_the_modules_it_describes() -> None:
    text = DOC.read_text()
    root = DOC.parents[1] / "services" / "moodbgm"
    for module in ("stages.py", "pipeline.py", "jobs.py", "media.py", "devices.py", "jobstore/", "worker/"):
        assert module in text, module
        assert (root / module).exists(), module
