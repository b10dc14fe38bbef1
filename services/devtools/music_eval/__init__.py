"""The music evaluator (issue 12): judges what the composer made and how the mix carried it.

``python -m devtools.music_eval JOBDIR [...]`` evaluates finished job directories; ``--bench`` first
runs samples in every style. ``symbolic`` measures the score (bgm.mid), ``audio`` the bed (bgm.wav),
``ducking`` the music as mixed (mix.wav regressed on the stems), ``cues`` reads the measurements
against the composer's one cue table, ``evaluate`` puts it together with the pass/fail bar, ``figure``
draws it.
"""
