"""The key plan: one home key, closely related keys for the sections, pivot chords between them (pure).

Keys are compared by their signature (the major key with the same notes: A minor, E Phrygian and
F Lydian all have C major's). A section's key keeps the emotion's mode and moves at most one step on
the circle of fifths from the home signature (the closely related keys: relative, dominant,
subdominant and their relatives), or takes the home tonic in another mode (the parallel key, a
common-tone change). The last section returns to the home tonic so the piece closes at home. A change
of key is prepared in the previous section's last bar by a pivot chord: a triad of the old key whose
notes all belong to the new key, preferably the new key's ii, IV or vi (a predominant); when the keys
share no triad, the new key's dominant leads in and a held common tone bridges the change.
"""

from __future__ import annotations

import numpy as np

from moodbgm.generate.composer.harmony import Chord
from moodbgm.generate.composer.mapping import SCALES

_SIGNATURE_SHIFT = {"major": 0, "lydian": 7, "minor": 3, "harmonic_minor": 3, "phrygian": 8}


def signature(tonic: int, mode: str) -> int:
    """The pitch class of the major key with the same key signature."""
    return (tonic + _SIGNATURE_SHIFT[mode]) % 12


def fifths(a: int, b: int) -> int:
    """Steps between two pitch classes on the circle of fifths (0..6)."""
    d = ((a - b) * 7) % 12
    return min(d, 12 - d)


def scale_pcs(tonic: int, mode: str) -> frozenset[int]:
    return frozenset((tonic + s) % 12 for s in SCALES[mode])


def related_tonic(
    mode: str,
    home: tuple[int, str],
    previous: tuple[int, str],
    preferred: tuple[int, ...],
    rng: np.random.Generator,
) -> int:
    """A tonic for ``mode`` closely related to the home key, near the previous key."""
    home_sig = signature(*home)
    prev_sig = signature(*previous)
    scored: list[tuple[float, int]] = []
    for t in range(12):
        sig = signature(t, mode)
        related = fifths(sig, home_sig) <= 1 or t == home[0]
        if not related:
            continue
        cost = fifths(sig, prev_sig) + 0.5 * fifths(sig, home_sig)
        cost -= 0.3 if t in preferred else 0.0
        cost -= 0.2 if t == previous[0] else 0.0
        scored.append((cost, t))
    scored.sort()
    best = [t for c, t in scored if c <= scored[0][0] + 0.35]
    return int(best[int(rng.integers(0, len(best)))])


def _triads(tonic: int, mode: str) -> list[tuple[int, tuple[int, ...]]]:
    """Diatonic triads as (root pc, absolute pcs)."""
    scale = SCALES[mode]
    out = []
    for d in range(7):
        pcs = tuple((tonic + scale[(d + k) % 7]) % 12 for k in (0, 2, 4))
        out.append((d, pcs))
    return out


def pivot_chord(old: tuple[int, str], new: tuple[int, str]) -> Chord | None:
    """A chord of the old key (relative to its tonic) that leads into the new key, or None (same key)."""
    if old[0] == new[0] and scale_pcs(*old) == scale_pcs(*new):
        return None
    new_pcs = scale_pcs(*new)
    new_triads = {pcs: d for d, pcs in _triads(*new)}
    best: tuple[int, tuple[int, ...]] | None = None
    for _, pcs in _triads(*old):
        if not set(pcs) <= new_pcs or len(set(pcs)) < 3:
            continue
        quality = (pcs[1] - pcs[0]) % 12, (pcs[2] - pcs[0]) % 12
        if quality not in ((4, 7), (3, 7)):
            continue
        role = new_triads.get(pcs)
        rank = {1: 0, 3: 0, 5: 1, 4: 2}.get(role if role is not None else -1, 3)
        if best is None or rank < best[0]:
            best = (rank, pcs)
    if best is not None:
        pcs = best[1]
        root = (pcs[0] - old[0]) % 12
        return Chord("pivot", root, tuple((p - pcs[0]) % 12 for p in pcs))
    dominant = (new[0] + 7 - old[0]) % 12  # the new key's V, spelled from the old tonic
    return Chord("V/new", dominant, (0, 4, 7))


def common_tone(a: tuple[int, ...], b: tuple[int, ...], fallback: frozenset[int]) -> int | None:
    """A pitch class of both chords (else of ``fallback``, e.g. both scales), preferring ``a``'s root."""
    shared = [pc for pc in a if pc in b]
    if shared:
        return shared[0]
    shared = [pc for pc in a if pc in fallback]
    return shared[0] if shared else None
