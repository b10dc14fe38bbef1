"""Fit the sequence context head (``moodbgm.emotion_sequence.SequenceHead``) with PyTorch on CPU.

Used by ``train_emotion.py``; each member is a bidirectional GRU trained from its own seed (AdamW,
mini-batches of whole passages, dropout on the inputs, the projection and the GRU states), and the
ensemble averages their log-probabilities.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from moodbgm.emotion_sequence import PARAMS, SequenceHead, sequence_inputs
from moodbgm.types import EMOTIONS

PROJ = 64
HIDDEN = 64
EPOCHS = 60
LEARNING_RATE = 3e-3
WEIGHT_DECAY = 1e-4
BATCH = 16
SEEDS = (0, 1, 2)


def fit_sequence_head(
    emb: Sequence[np.ndarray], logp: Sequence[np.ndarray], y: np.ndarray, dropout: float
) -> SequenceHead:
    """An ensemble of ``len(SEEDS)`` members fitted on the passages ``emb``/``logp`` (one array per
    passage) with the labels ``y`` of all their sentences in order."""
    import torch

    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    xs = [torch.from_numpy(sequence_inputs(e, lp)) for e, lp in zip(emb, logp, strict=True)]
    ends = np.cumsum([0] + [len(x) for x in xs])
    ys = [torch.from_numpy(y[a:b].astype(np.int64)) for a, b in itertools.pairwise(ends)]
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
