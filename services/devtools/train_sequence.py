"""Fit the sequence context head (``moodbgm.emotion_sequence.SequenceHead``) with PyTorch on CPU.

Used by ``train_emotion.py``; each member is a bidirectional GRU trained from its own seed (AdamW,
mini-batches of whole sequences, dropout on the inputs, the projection and the GRU states), and the
ensemble averages their log-probabilities.

The sequences are the passages alone *and* long talks: ``TALK_REPEATS`` random orders of the same
passages joined into talks of ``TALK_LENGTHS`` phrases (``long_talks``), as a real transcript strings
several topics and moods together. Trained on passages of at most 7 phrases only, the GRU read the
21-line demo script (in windows of 7) with its anger part neutral: at a passage's start it had learned
that set-up lines are neutral, and it never saw a mood change inside a sequence.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from moodbgm.emotion_sequence import PARAMS, SPAN, SequenceHead, sequence_inputs
from moodbgm.types import EMOTIONS

PROJ = 64
HIDDEN = 64
EPOCHS = 60
LEARNING_RATE = 3e-3
WEIGHT_DECAY = 1e-4
BATCH = 16
SEEDS = (0, 1, 2)
TALK_LENGTHS = (15, SPAN)  # a long talk joins passages until it has at least a length drawn from this range
TALK_REPEATS = 3  # random orders of the passages joined into long talks (each also trains alone)


def long_talks(
    lengths: Sequence[int], rng: np.random.Generator, repeats: int = TALK_REPEATS
) -> list[list[int]]:
    """Groups of passage indices, each joined in order into one talk: ``repeats`` random orders of all
    passages (``lengths`` phrases each) cut into talks of at least a length drawn from ``TALK_LENGTHS``
    (the last talk of an order may be shorter)."""
    lo, hi = TALK_LENGTHS
    talks: list[list[int]] = []
    for _ in range(repeats):
        talk: list[int] = []
        target = int(rng.integers(lo, hi + 1))
        for i in rng.permutation(len(lengths)):
            talk.append(int(i))
            if sum(lengths[j] for j in talk) >= target:
                talks.append(talk)
                talk, target = [], int(rng.integers(lo, hi + 1))
        if talk:
            talks.append(talk)
    return talks


def fit_sequence_head(
    emb: Sequence[np.ndarray],
    logp: Sequence[np.ndarray],
    y: np.ndarray,
    dropout: float,
    talk_repeats: int = TALK_REPEATS,
) -> SequenceHead:
    """An ensemble of ``len(SEEDS)`` members fitted on the passages ``emb``/``logp`` (one array per
    passage) with the labels ``y`` of all their sentences in order, each passage alone and in
    ``talk_repeats`` sets of long talks (``long_talks``, seeded)."""
    import torch

    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    ends = np.cumsum([0] + [len(e) for e in emb])
    labels = [y[a:b].astype(np.int64) for a, b in itertools.pairwise(ends)]
    groups = [[i] for i in range(len(emb))]
    groups += long_talks([len(e) for e in emb], np.random.default_rng(SEEDS[0]), talk_repeats)
    xs = [  # the edge flags mark only the talk's own first and last phrase
        torch.from_numpy(sequence_inputs(np.vstack([emb[i] for i in g]), np.vstack([logp[i] for i in g])))
        for g in groups
    ]
    ys = [torch.from_numpy(np.concatenate([labels[i] for i in g])) for g in groups]
    d_in = xs[0].shape[1]

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.drop = torch.nn.Dropout(dropout)
            self.proj = torch.nn.Linear(d_in, PROJ)
            self.gru = torch.nn.GRU(PROJ, HIDDEN, batch_first=True, bidirectional=True)
            self.out = torch.nn.Linear(2 * HIDDEN + PROJ, len(EMOTIONS))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.tanh(self.proj(self.drop(x)))
            g, _ = self.gru(self.drop(h))
            return self.out(self.drop(torch.cat([g, h], -1)))

    members = []
    for seed in SEEDS:
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        net = Net()
        opt = torch.optim.AdamW(net.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
        for _ in range(EPOCHS):
            net.train()
            order = rng.permutation(len(xs))
            for start in range(0, len(order), BATCH):
                idx = order[start : start + BATCH]
                width = max(len(xs[i]) for i in idx)
                xb = torch.zeros(len(idx), width, d_in)
                yb = torch.full((len(idx), width), -100, dtype=torch.long)
                for row, i in enumerate(idx):
                    xb[row, : len(xs[i])], yb[row, : len(xs[i])] = xs[i], ys[i]
                logits = net(xb).reshape(-1, len(EMOTIONS))
                loss = torch.nn.functional.cross_entropy(logits, yb.reshape(-1), ignore_index=-100)
                opt.zero_grad()
                loss.backward()
                opt.step()
        state = net.state_dict()
        members.append({k: state[k].detach().numpy().astype(np.float32).copy() for k in PARAMS})
    return SequenceHead(tuple(members))
