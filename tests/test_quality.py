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


@pytest.mark.parametrize("classes", [2, 3, 10])
def test_rank_auc_equals_scikit_learn_with_ties(classes):
    from evotrace.search.train import auc_one_vs_rest

    rng = np.random.default_rng(classes)
    y = np.r_[np.arange(classes), rng.integers(0, classes, 200)]
    probs = rng.dirichlet(np.ones(classes), size=len(y)).round(2)  # rounding makes many ties
    probs /= probs.sum(1, keepdims=True)
    if classes == 2:
        expected = roc_auc_score(y, probs[:, 1])
    else:
        expected = roc_auc_score(y, probs, multi_class="ovr", labels=np.arange(classes))
    assert auc_one_vs_rest(y, probs) == pytest.approx(expected, abs=1e-12)


def test_auc_names_the_class_missing_from_the_validation_rows():
    from evotrace.search.train import auc_one_vs_rest

    with pytest.raises(ValueError, match=r"class\(es\) \[2\]"):
        auc_one_vs_rest(np.array([0, 1, 0, 1]), np.full((4, 3), 1 / 3))
