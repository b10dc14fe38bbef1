"""The music evaluator (issue 12): judges what the composer made and how the mix carried it.

``python -m devtools.music_eval JOBDIR [...]`` evaluates finished job directories;
``--bench`` first scores the demo and a second sample (another emotional arc) in every style.
See ``evaluate`` for the measures and ``cues`` for the cue table.
"""
