"""What a simulated candidate would have cost and scored: the models of the simulated evaluator.

`synthetic` is a documented landscape over the real search space; `fitted:PATH` learns the same two
quantities from a finished study's candidates.parquet, so that a small real run can be extrapolated to
many workers. Both answer two questions per candidate: its quality (None when it fails) and its
training time in seconds, given its parameter count and the fraction of its parameters transferred
(frozen) from a donor."""

from __future__ import annotations

import math
import sys
from functools import lru_cache
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from ..spaces import SearchSpace

# fraction of the training time saved per transferred (frozen) fraction of the parameters: frozen
# tensors need no gradient or optimizer step, but the forward pass still runs through them
TRANSFER_SAVING = 0.5


class ModelError(ValueError):
    """A simulation model that cannot be built; the message names the model and the problem."""


class Layouts:
    """The tensors of each architecture (space.tensor_layout), as arrays, remembered for the last
    `size` architectures: NB201 has 15,625 cells, so a long search computes each one once."""

    def __init__(self, space: SearchSpace, size: int = 32768):
        self.space = space
        self._get = lru_cache(maxsize=size)(self._compute)

    def _compute(self, seq: tuple[int, ...]):
        layout = self.space.tensor_layout(seq)
        names = tuple(sys.intern(name) for name, _, _ in layout)  # the same names recur in every architecture
        maxpos = np.fromiter((p for _, p, _ in layout), np.int16, len(layout))
        nbytes = np.fromiter((b for _, _, b in layout), np.int64, len(layout))
        return names, maxpos, nbytes, int(nbytes.sum())

    def __call__(self, seq: Sequence[int]):
        """(names, largest position per tensor, bytes per tensor, total bytes)."""
        return self._get(tuple(int(v) for v in seq))

    def transferred_fraction(self, seq: Sequence[int], prefix_len: int | None) -> float:
        """Bytes of the tensors a donor sharing `prefix_len` positions provides, over all bytes."""
        if prefix_len is None:
            return 0.0
        _, maxpos, nbytes, total = self(seq)
        return float(nbytes[maxpos < prefix_len].sum()) / total if total else 0.0


class CandidateDraws:
    """Each candidate's random draws (two standard normals, one uniform) from (seed, job_id) alone, so that a
    resumed search, re-running candidates out of order, sees the same ones. Drawn for a block of job ids at
    a time: seeding a generator per candidate cost more than the rest of the model."""

    block = 4096

    def __init__(self, seed: int, keep: int = 4):
        self.seed, self.keep = seed, keep
        self._blocks: dict[int, list[tuple[float, float, float]]] = {}

    def __call__(self, job_id: int) -> tuple[float, float, float]:
        b, i = divmod(int(job_id), self.block)
        draws = self._blocks.get(b)
        if draws is None:
            rng = np.random.default_rng([self.seed, 0xD8A5, b])
            z = rng.standard_normal((2, self.block))
            draws = self._blocks[b] = list(zip(z[0].tolist(), z[1].tolist(), rng.random(self.block).tolist()))
            if len(self._blocks) > self.keep:  # jobs run roughly in job_id order: the oldest block is done
                del self._blocks[min(self._blocks)]
        return draws[i]


class SyntheticModel:
    """Quality = 0.10 + 0.85 * sigmoid(score) + N(0, noise), score = sum of per-position effects
    a_i[c_i] ~ N(0, 1/L) plus adjacent-pair interactions g * u_i[c_i] * u_{i+1}[c_{i+1}] / sqrt(L);
    training time = base_seconds * params / mean params of a random candidate * LogNormal(0, sigma)
    * (1 - TRANSFER_SAVING * transferred fraction). A candidate fails with probability failure_rate.
    Everything is drawn from the seed, and each candidate's noise from (seed, job_id) (CandidateDraws)."""

    def __init__(self, space: SearchSpace, layouts: Layouts, seed: int, base_seconds: float = 30.0,
                 time_sigma: float = 0.3, noise: float = 0.01, interaction: float = 0.5, failure_rate: float = 0.0):
        rng = np.random.default_rng([seed, 0x5EED])
        length = len(space.num_choices)
        scale = 1.0 / math.sqrt(length)
        self.effects = [rng.normal(0.0, scale, n) for n in space.num_choices]
        self.pairs = [rng.normal(0.0, 1.0, n) for n in space.num_choices]
        self.interaction = interaction * scale
        self.seed, self.layouts, self.draws = seed, layouts, CandidateDraws(seed)
        self.base_seconds, self.time_sigma, self.noise, self.failure_rate = base_seconds, time_sigma, noise, failure_rate
        probe = np.random.default_rng([seed, 0xB17E])
        self.mean_bytes = float(np.mean([layouts(space.sample(probe))[3] for _ in range(64)]))

    def describe(self) -> dict:
        return {"model": "synthetic", "base_seconds": self.base_seconds, "time_sigma": self.time_sigma,
                "noise": self.noise, "interaction": self.interaction, "failure_rate": self.failure_rate,
                "transfer_saving": TRANSFER_SAVING}

    def outcome(self, job_id: int, seq: Sequence[int], prefix_len: int | None) -> tuple[float | None, float]:
        z_quality, z_time, u = self.draws(job_id)
        score = sum(e[c] for e, c in zip(self.effects, seq))
        score += self.interaction * sum(self.pairs[i][seq[i]] * self.pairs[i + 1][seq[i + 1]] for i in range(len(seq) - 1))
        quality = 0.10 + 0.85 / (1.0 + math.exp(-score)) + self.noise * z_quality
        saving = 1.0 - TRANSFER_SAVING * self.layouts.transferred_fraction(seq, prefix_len)
        seconds = self.base_seconds * self.layouts(seq)[3] / self.mean_bytes * math.exp(self.time_sigma * z_time) * saving
        return (None if u < self.failure_rate else float(quality)), float(seconds)


class FittedModel:
    """Learned from a finished study's candidates (one run): quality by additive per-position effects
    (shrunk towards zero for rarely seen choices; unseen choices get zero) plus Gaussian noise with
    the residual spread; log training time by least squares on log parameter bytes and the transferred
    fraction, plus lognormal noise with the residual spread; failures at the observed rate."""

    def __init__(self, path: str, space: SearchSpace, layouts: Layouts, seed: int, shrink: float = 2.0):
        import pyarrow.parquet as pq

        from ..trace import TraceError, read_candidates, run_metadata

        try:
            table = read_candidates(path)
        except TraceError as err:
            raise ModelError(f"fitted:{path}: {err}") from None
        meta = run_metadata(table.schema) or run_metadata(pq.read_schema(path))
        if meta.get("num_choices") not in (None, list(space.num_choices)):
            raise ModelError(f"fitted:{path}: trace of space {meta.get('space')} with choices {meta.get('num_choices')}, "
                             f"the simulated space has {list(space.num_choices)}")
        df = table.to_pandas()
        ok = df[df["status"] == "ok"]
        if len(ok) < 10 or ok["train_seconds"].isna().all():
            raise ModelError(f"fitted:{path}: needs at least 10 completed candidates with train_seconds, has {len(ok)}")
        seqs = np.array([list(s) for s in ok["arch_seq"]], dtype=np.int64)
        y = ok["quality"].to_numpy(float)
        self.mean = float(y.mean())
        self.effects = [np.zeros(n) for n in space.num_choices]
        resid = y - self.mean
        for _ in range(5):  # backfitting of the additive effects
            for i, n in enumerate(space.num_choices):
                resid += self.effects[i][seqs[:, i]]
                sums = np.bincount(seqs[:, i], weights=resid, minlength=n)
                counts = np.bincount(seqs[:, i], minlength=n)
                self.effects[i] = sums / (counts + shrink)
                resid -= self.effects[i][seqs[:, i]]
        self.noise = float(resid.std())
        timed = ok[ok["train_seconds"] > 0]
        x = np.column_stack([
            np.ones(len(timed)),
            np.log([layouts(s)[3] for s in timed["arch_seq"]]),
            [layouts.transferred_fraction(s, None if pd_na(p) else int(p)) for s, p in zip(timed["arch_seq"], timed["prefix_len"])],
        ])
        logt = np.log(timed["train_seconds"].to_numpy(float))
        self.coef, *_ = np.linalg.lstsq(x, logt, rcond=None)
        self.time_sigma = float((logt - x @ self.coef).std())
        self.failure_rate = float((df["status"] != "ok").mean())
        self.path, self.seed, self.layouts, self.fitted_on = path, seed, layouts, len(ok)
        self.draws = CandidateDraws(seed)

    def describe(self) -> dict:
        return {"model": f"fitted:{self.path}", "fitted_on": self.fitted_on, "quality_noise": self.noise,
                "time_coef": [float(c) for c in self.coef], "time_sigma": self.time_sigma,
                "failure_rate": self.failure_rate}

    def outcome(self, job_id: int, seq: Sequence[int], prefix_len: int | None) -> tuple[float | None, float]:
        z_quality, z_time, u = self.draws(job_id)
        quality = self.mean + sum(e[c] for e, c in zip(self.effects, seq)) + self.noise * z_quality
        a, b, c = self.coef
        seconds = math.exp(a + b * math.log(self.layouts(seq)[3]) + c * self.layouts.transferred_fraction(seq, prefix_len)
                           + self.time_sigma * z_time)
        return (None if u < self.failure_rate else float(quality)), float(seconds)


def pd_na(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def make_model(name: str, space: SearchSpace, seed: int, layouts: Layouts | None = None):
    """`synthetic` or `fitted:PATH` (a candidates.parquet of the same space)."""
    layouts = layouts or Layouts(space)
    if name == "synthetic":
        return SyntheticModel(space, layouts, seed)
    if name.startswith("fitted:") and len(name) > len("fitted:"):
        return FittedModel(name[len("fitted:"):], space, layouts, seed)
    raise ModelError(f"unknown simulation model {name!r}: use 'synthetic' or 'fitted:PATH/candidates.parquet'")
