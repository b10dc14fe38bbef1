"""Source genres -> moodbgm styles (pure), so training captions carry the style words the user picks.

A genre matches a style when one of the style's keywords is a whole word (or phrase) of the genre,
after ``normalize_genre`` (lower case, ``&``/``and``/``-``/``_``/``/`` spelled as spaces). A track's
genres are tried in order (most salient first); the first that matches decides. Genres with no
match (pop, rock, ...) give no style: their captions name no style (see ``moodbgm.generate.prompts``).

The keywords follow the style's instruments (``STYLE_INSTRUMENTS``): cinematic is orchestral and
piano music, lofi the beat- and groove-based genres, electronic the synthesised ones, acoustic the
guitar-led ones.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from moodbgm.generate.base import STYLES

STYLE_KEYWORDS: dict[str, tuple[str, ...]] = {
    "cinematic": ("cinematic", "classical", "orchestral", "orchestra", "score", "soundtrack", "film",
                  "trailer", "epic", "piano", "strings", "drama"),
    "lofi": ("lofi", "lo fi", "beats", "chillhop", "hip hop", "hiphop", "boom bap", "jazz", "lounge",
             "soul", "rnb", "r b", "funk", "trip hop", "downtempo", "chill"),
    "electronic": ("electronic", "electronica", "edm", "dance", "house", "techno", "trance", "drum bass",
                   "dubstep", "synthwave", "synth", "trap", "ambient", "breakbeat", "electro", "idm"),
    "acoustic": ("acoustic", "folk", "country", "singer songwriter", "blues", "bluegrass", "americana",
                 "guitar", "unplugged"),
}  # fmt: skip
"""Keywords per style, matched as whole words of the normalised genre."""

assert set(STYLE_KEYWORDS) == set(STYLES)

_SEPARATORS = re.compile(r"[\s_\-/&+]+|\band\b|\bn\b")


def normalize_genre(genre: str) -> str:
    """``"Drum-and-Bass"`` -> ``"drum bass"``, ``"Lo-Fi"`` -> ``"lo fi"``, ``"R&B"`` -> ``"r b"``."""
    g = genre.strip().lower().replace("'", "")
    return " ".join(_SEPARATORS.sub(" ", g).split())


def style_for_genre(genre: str) -> str | None:
    """The style of one genre, or None (see the module doc)."""
    padded = f" {normalize_genre(genre)} "
    for style, keywords in STYLE_KEYWORDS.items():
        if any(f" {k} " in padded for k in keywords):
            return style
    return None


def style_for(genres: Iterable[str]) -> str | None:
    """The style of the first genre that has one (genres most salient first), or None."""
    for g in genres:
        if (style := style_for_genre(g)) is not None:
            return style
    return None
