"""Algorithm 1 of the study (parallel regularized evolution), free of MPI and clocks.

The driver decides where and when candidates run; this object only decides what runs next and keeps
the population. It follows Algorithm 1 exactly where DeepHyper's stock search does not: a mutation
always changes the value at its position, the parent, position and population version of every child
are kept, a failed candidate never enters the population, and every tournament samples s of exactly p
members (Section IV: "there are always p candidates in the population in stage 2 when sampling").

Stage 2 starts only once p results are in. Until then the stage boundary decides what a free worker
gets (`search.stage_boundary`):
  "wait"    nothing: exactly p stage-1 candidates are running or done at any time, and a failed one is
            replaced by another random candidate, so stage 1 ends with p successes plus its failures;
  "random"  another random candidate, as DeepHyper's RegularizedEvolution does (about p + W - 1 random
            candidates with W workers)."""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np


BOUNDARIES = ("wait", "random")


class StarvedPopulation(RuntimeError):
    """No candidate can be created now (the population is not full yet) and none is running."""


@dataclass
class Candidate:
    job_id: int
    stage: int
    arch_seq: tuple[int, ...]
    population_version: int
    parent_id: int | None = None
    mutation_pos: int | None = None


@dataclass
class Member:
    insert_seq: int
    job_id: int
    quality: float
    arch_seq: tuple[int, ...] = field(repr=False)


def position_weights(spec, length: int) -> np.ndarray:
    """Probabilities of mutating each position: 'uniform', 'linear' (later positions favoured, the
    study's proposal to transfer more layers) or explicit non-negative weights."""
    if spec in (None, "uniform"):
        weights = np.ones(length)
    elif spec == "linear":
        weights = np.arange(1, length + 1, dtype=float)
    else:
        weights = np.asarray(spec, dtype=float)
        if weights.shape != (length,) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(
                f"mutation position weights must be {length} non-negative numbers, not all zero; got {list(spec)}"
            )
    return weights / weights.sum()


class RegularizedEvolution:
    def __init__(
        self,
        num_choices: Sequence[int],
        population: int,
        sample: int,
        candidates: int,
        rng: np.random.Generator,
        positions="uniform",
        stage_boundary: str = "wait",
    ):
        if not 2 <= sample < population < candidates:
            raise ValueError(
                f"Algorithm 1 needs 2 <= s < p < N, got s={sample}, p={population}, N={candidates}"
            )
        self.num_choices = [int(n) for n in num_choices]
        if any(n < 2 for n in self.num_choices):
            raise ValueError("every variable node needs at least 2 choices to be mutated")
        if stage_boundary not in BOUNDARIES:
            raise ValueError(f"search.stage_boundary must be one of {BOUNDARIES}, got {stage_boundary!r}")
        self.p, self.s, self.n = population, sample, candidates
        self.boundary = stage_boundary
        self.rng = rng
        self.weights = position_weights(positions, len(self.num_choices))
        self._cdf = np.cumsum(self.weights)[:-1].tolist()  # bisect a uniform draw: the mutated position
        self._choices = np.asarray(self.num_choices)
        self.population: deque[Member] = deque()
        self.created = 0
        self.inserted = 0
        self.stage1_created = 0  # stage-1 candidates are job ids 0..stage1_created-1
        self.stage1_failed = 0

    @property
    def done_creating(self) -> bool:
        return self.created >= self.n

    @property
    def population_full(self) -> bool:
        return self.inserted >= self.p

    def can_create(self) -> bool:
        if self.done_creating:
            return False
        if self.population_full or self.boundary == "random":
            return True
        return self.stage1_created - self.stage1_failed < self.p  # replace stage-1 failures only

    def create(self) -> Candidate:
        if not self.can_create():
            raise StarvedPopulation(
                f"cannot create candidate {self.created}: the population has {len(self.population)} of "
                f"p={self.p} members and {self.stage1_created - self.stage1_failed - self.inserted} "
                f"stage-1 candidates are running"
            )
        job_id = self.created
        self.created += 1
        if not self.population_full:
            self.stage1_created += 1
            seq = tuple(self.rng.integers(0, self._choices).tolist())
            return Candidate(job_id, 1, seq, self.inserted)
        # one draw of s + 2 uniforms per child: s members without replacement (a partial Fisher-Yates
        # shuffle), the position, the new value (numpy's choice costs ~20 us a call, the master's budget)
        u = self.rng.random(self.s + 2).tolist()
        size, swapped, picks = len(self.population), {}, []
        for j in range(self.s):
            k = j + int(u[j] * (size - j))
            picks.append(swapped.get(k, k))
            swapped[k] = swapped.get(j, j)
        parent = max((self.population[i] for i in picks), key=lambda m: m.quality)
        pos = bisect.bisect_right(self._cdf, u[self.s])
        new = int(u[self.s + 1] * (self.num_choices[pos] - 1))
        if new >= parent.arch_seq[pos]:
            new += 1  # uniform over the other choices
        seq = parent.arch_seq[:pos] + (new,) + parent.arch_seq[pos + 1:]
        return Candidate(job_id, 2, seq, self.inserted, parent.job_id, pos)

    def complete(self, job_id: int, arch_seq: Sequence[int], quality: float | None) -> int | None:
        """Insert a finished candidate; return its insert_seq, or None for a failure (never inserted)."""
        if quality is None or not np.isfinite(quality):
            if job_id < self.stage1_created:
                self.stage1_failed += 1
            return None
        member = Member(self.inserted, job_id, float(quality), tuple(arch_seq))
        self.inserted += 1
        self.population.append(member)
        if len(self.population) > self.p:
            self.population.popleft()
        return member.insert_seq

    def restore(self, created: int, inserted: list[tuple[int, int, Sequence[int], float]],
                stage1_created: int, stage1_failed: int) -> None:
        """Rebuild the state of a resumed search from its trace: `created` candidates so far, the
        (insert_seq, job_id, arch_seq, quality) of every inserted one, the stage-1 candidates created
        and the failed ones among them."""
        self.created = created
        self.stage1_created, self.stage1_failed = stage1_created, stage1_failed
        self.population.clear()
        ordered = sorted(inserted)
        if [r[0] for r in ordered] != list(range(len(ordered))):
            raise ValueError("trace insert_seq values are not 0..k-1: cannot rebuild the population")
        for insert_seq, job_id, seq, quality in ordered[-self.p:]:
            self.population.append(Member(insert_seq, job_id, float(quality), tuple(seq)))
        self.inserted = len(ordered)

    def qualities(self) -> list[float]:
        return [m.quality for m in self.population]
