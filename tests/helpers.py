"""Small builders shared by several test modules (import as ``from helpers import ...``)."""

from __future__ import annotations

from moodbgm.types import Section, Timeline


def timeline(*spans: tuple[float, str]) -> Timeline:
    """A timeline from consecutive (length, emotion) sections starting at 0."""
    sections, t = [], 0.0
    for length, emotion in spans:
        sections.append(Section(t, t + length, emotion))
        t += length
    return Timeline(t, tuple(sections))
