"""Training and scoring of one candidate on the worker's device."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


class NonFiniteLoss(RuntimeError):
    """Training diverged; the candidate is recorded as failed."""


@dataclass
class TrainResult:
    quality: float
    train_seconds: float
    epochs: int
    final_loss: float


def pick_device(local_rank: int) -> torch.device:
    """One GPU per worker rank (local rank modulo the visible GPUs) when CUDA is present."""
    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def _epochs(model, x, y, epochs, cfg, generator) -> float:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params or epochs == 0:
        return float("nan")
    # foreach: one kernel per step for all tensors, also on CPU (torch picks it only for CUDA); the same numbers
    if cfg.get("optimizer", "sgd") == "adam":
        opt = torch.optim.Adam(params, lr=cfg.get("learning_rate", 1e-3), weight_decay=cfg.get("weight_decay", 0.0),
                               foreach=True)
    else:
        opt = torch.optim.SGD(
            params, lr=cfg.get("learning_rate", 0.05), momentum=cfg.get("momentum", 0.9),
            weight_decay=cfg.get("weight_decay", 5e-4), nesterov=cfg.get("momentum", 0.9) > 0, foreach=True,
        )
    steps_per_epoch = math.ceil(len(x) / cfg.get("batch_size", 128))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss()
    batch = cfg.get("batch_size", 128)
    loss = torch.tensor(float("nan"))
    for _ in range(epochs):
        model.train()  # frozen, transferred BatchNorms stay in eval mode (transfer.freeze_bn)
        order = torch.randperm(len(x), generator=generator).to(x.device)
        for start in range(0, len(x), batch):
            idx = order[start:start + batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            if not torch.isfinite(loss):
                raise NonFiniteLoss(f"non-finite training loss {loss.item()}")
            loss.backward()
            opt.step()
            sched.step()
    return float(loss.item())


@torch.no_grad()
def score(model, x, y, quality: str, batch: int = 1024) -> float:
    model.eval()
    logits = torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)])
    if not torch.isfinite(logits).all():
        raise NonFiniteLoss("non-finite outputs on the validation set")
    pred = logits.argmax(1)
    if quality == "val_accuracy":
        return float((pred == y).float().mean().item())
    if quality == "val_balanced_accuracy":
        classes = torch.unique(y)
        return float(torch.stack([(pred[y == c] == c).float().mean() for c in classes]).mean().item())
    if quality == "val_auc":
        return auc_one_vs_rest(y.cpu().numpy(), torch.softmax(logits.double(), 1).cpu().numpy())
    raise ValueError(f"unknown quality {quality!r}")


def auc_one_vs_rest(y: np.ndarray, probs: np.ndarray) -> float:
    """ROC AUC of the positive class (two classes) or the mean one-vs-rest AUC (more), as scikit-learn's
    roc_auc_score computes them, from average ranks (Mann-Whitney U): one vectorised pass instead of
    scikit-learn's per-class input checks, which took a third of scoring a small candidate."""
    from scipy.stats import rankdata

    if probs.shape[1] == 2:
        probs, positive = probs[:, 1:], (y == 1)[:, None]
    else:
        positive = y[:, None] == np.arange(probs.shape[1])
    n_pos = positive.sum(0)
    n_neg = len(y) - n_pos
    if (n_pos == 0).any() or (n_neg == 0).any():
        absent = np.flatnonzero((n_pos == 0) | (n_neg == 0)).tolist()
        raise ValueError(f"val_auc needs positives and negatives of every class among the validation rows; "
                         f"class(es) {absent} lack one")
    rank_sum = np.where(positive, rankdata(probs, axis=0), 0.0).sum(0)
    return float(((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)).mean())


def train_candidate(model, data, epochs: int, cfg: dict, device, seed: int) -> TrainResult:
    """Train the tensors that require gradients for `epochs` (0 when none does) and score on the validation split.
    `data` holds x_train, y_train, x_val, y_val tensors on `device`."""
    generator = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    model.to(device)
    if not any(p.requires_grad for p in model.parameters()):
        epochs = 0  # everything was inherited and frozen: nothing trains
    loss = _epochs(model, data["x_train"], data["y_train"], epochs, cfg, generator)
    quality = score(model, data["x_val"], data["y_val"], cfg.get("quality", "val_accuracy"))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return TrainResult(quality, time.perf_counter() - t0, epochs, loss)


def seed_for(seed: int, job_id: int) -> int:
    """A per-candidate seed: reproducible, distinct across candidates and searches."""
    return int(np.random.SeedSequence([seed, job_id]).generate_state(1)[0])
