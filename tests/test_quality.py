"""Scoring a candidate: the fine-grained AUC quality for binary and multi-class validation sets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from evotrace.search.train import score


class Fixed(torch.nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = torch.as_tensor(logits, dtype=torch.float32)

    def forward(self, x):
        return self.logits[x.long().view(-1)]


def test_binary_auc_ranks_the_positive_probability():
    y = torch.tensor([0, 0, 1, 1])
    logits = [[0.0, -1.0], [0.0, 0.5], [0.0, 0.2], [0.0, 2.0]]  # positives score 0.2 and 2.0, negatives -1 and 0.5
    assert score(Fixed(logits), torch.arange(4), y, "val_auc") == pytest.approx(0.75)


def test_multiclass_auc_is_the_mean_one_vs_rest_auc():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(30, 3))
    y = np.r_[np.zeros(10), np.ones(10), np.full(10, 2)].astype(np.int64)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    expected = np.mean([roc_auc_score(y == k, probs[:, k]) for k in range(3)])
    got = score(Fixed(logits), torch.arange(30), torch.as_tensor(y), "val_auc")
    assert got == pytest.approx(expected, abs=1e-6)
    assert score(Fixed(logits), torch.arange(30), torch.as_tensor(y), "val_accuracy") == pytest.approx(
        float((logits.argmax(1) == y).mean()))
