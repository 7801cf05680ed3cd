"""LCP donor lookup time of PrefixIndex with many stored models (target: median <= 100 us).

Two populations per space: uniformly random sequences (they diverge after a few positions) and
"evolved" ones, each a one-position mutation of an earlier model, so prefixes are long and shared as in
stage 2 of regularized evolution. Queries are mutations of stored models (the master's real query)."""

from __future__ import annotations

import argparse
import random
import os
import statistics
import time

from evotrace.transfer import PrefixIndex

ATTN = [391 if node.startswith("d") else 2 for node in ("d0", "s0_0", "d1", "s1_0", "s1_1", "d2", "s2_0", "s2_1", "s2_2")] * 6
NB201 = [5] * 6


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def population(choices, n, evolved, rng):
    seqs = []
    for i in range(n):
        if evolved and i >= 100:
            seq = list(rng.choice(seqs[-1000:]))
            pos = rng.randrange(len(choices))
            seq[pos] = rng.randrange(choices[pos])
            seqs.append(tuple(seq))
        else:
            seqs.append(tuple(rng.randrange(c) for c in choices))
    return seqs


def bench(label, choices, n, queries, evolved, seed=0):
    rng = random.Random(seed)
    seqs = population(choices, n, evolved, rng)
    rss0 = rss_mb()
    index = PrefixIndex()
    t0 = time.perf_counter()
    for i, seq in enumerate(seqs):
        index.add(i, seq, rng.random())
    build = time.perf_counter() - t0
    rss = rss_mb() - rss0
    qs = []
    for _ in range(queries):
        seq = list(rng.choice(seqs))
        pos = rng.randrange(len(choices))
        seq[pos] = rng.randrange(choices[pos])
        qs.append(tuple(seq))
    times, lcps = [], []
    for q in qs:
        t = time.perf_counter_ns()
        _, lcp = index.best(q)
        times.append(time.perf_counter_ns() - t)
        lcps.append(lcp)
    del seqs
    victims = rng.sample(range(n), min(n, 2000))
    t = time.perf_counter()
    for v in victims:
        index.remove(v)
    remove_us = (time.perf_counter() - t) / len(victims) * 1e6
    times.sort()
    print(
        f"{label:<22} models={n:>7} len={len(choices):>2} build={build:6.2f}s ({build / n * 1e6:5.1f} us/add) "
        f"index~{rss:6.0f}MB  best(): median={statistics.median(times) / 1000:6.2f} us "
        f"p99={times[int(0.99 * len(times))] / 1000:6.2f} us  mean lcp={statistics.mean(lcps):5.1f}  "
        f"remove={remove_us:6.1f} us"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=20_000)
    args = ap.parse_args()
    for evolved in (False, True):
        tag = "evolved" if evolved else "random"
        bench(f"ATTN-like {tag}", ATTN, args.models, args.queries, evolved)
        bench(f"NB201 {tag}", NB201, args.models, args.queries, evolved)


if __name__ == "__main__":
    main()
