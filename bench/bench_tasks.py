"""Per-candidate cost and discrimination of the embedded tasks (figures, not a test).

Trains the same K random architectures of each space on an old and a new embedded task side by side
(same process, alternating, so that load from other processes hits both alike) and prints the mean
training seconds per candidate, their ratio new / old, and how many distinct qualities the K
candidates reach. Tasks are dataset entries of a study config plus the run's epochs and quality.

    python bench/bench_tasks.py [--candidates 20]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from evotrace import data
from evotrace.search.train import train_candidate
from evotrace.spaces import make_space

OLD = {
    "nb201": (dict(source="sklearn-digits", validation_fraction=0.2, max_train=1100), 1, "val_accuracy"),
    "attn": (dict(source="sklearn-breast-cancer", validation_fraction=0.2, input_blocks=2), 3, "val_accuracy"),
}
NEW = {
    "nb201": (dict(source="sklearn-digits", validation_fraction=0.6, max_train=550), 1, "val_auc"),
    "attn": (dict(source="generated-attn", validation_fraction=0.4, max_train=600, max_val=1500, input_blocks=2), 2, "val_auc"),
}
TRAINING = dict(batch_size=32, optimizer="sgd", learning_rate=0.05, momentum=0.9, weight_decay=0.0005)


def tensors(ds):
    return {k: torch.as_tensor(getattr(ds, k)) for k in ("x_train", "y_train", "x_val", "y_val")}


def space_for(name, ds):
    if name == "nb201":
        return make_space("nb201", C=8, N=1, input_shape=list(ds.input_shape), num_classes=ds.num_classes)
    return make_space("attn", widths=[16, 96, 16], input_blocks=list(ds.blocks), num_classes=ds.num_classes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--candidates", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(1)
    for name in OLD:
        tasks = {}
        for label, (options, epochs, quality) in (("old", OLD[name]), ("new", NEW[name])):
            ds = data.prepare(seed=0, **options)
            tasks[label] = (ds, tensors(ds), epochs, dict(TRAINING, quality=quality))
        rng = np.random.default_rng(a.seed)
        space = space_for(name, tasks["old"][0])
        seqs = [space.sample(rng) for _ in range(a.candidates)]
        seconds = {label: [] for label in tasks}
        qualities = {label: [] for label in tasks}
        for i, seq in enumerate(seqs):
            for label, (ds, t, epochs, cfg) in tasks.items():
                torch.manual_seed(i)
                model = space_for(name, ds).build(seq)
                t0 = time.perf_counter()
                r = train_candidate(model, t, epochs, cfg, torch.device("cpu"), i)
                seconds[label].append(time.perf_counter() - t0)
                qualities[label].append(r.quality)
        for label, (ds, _, epochs, cfg) in tasks.items():
            q = np.asarray(qualities[label])
            print(f"{name} {label}: {ds.source} train {len(ds.x_train)} val {len(ds.x_val)} rows, {epochs} epoch(s), "
                  f"{cfg['quality']}: {np.mean(seconds[label]):.3f} s per candidate, {len(np.unique(q))} distinct "
                  f"qualities of {len(q)}, range {q.min():.4f}..{q.max():.4f}, median {np.median(q):.4f}")
        print(f"{name}: new / old seconds per candidate = {np.mean(seconds['new']) / np.mean(seconds['old']):.2f}")


if __name__ == "__main__":
    main()
