"""A trace of one parallel regularized-evolution run with transfer learning, at any size, for
benchmarking the analyses. It is drawn from the simulator (`evotrace simulate`): the project's one
implementation of Algorithm 1, its master, donors and popularity window, with W virtual workers and
the synthetic quality/time model over NAS-Bench-201 (C=8, N=1, 8x8 one-channel inputs, 6 positions x 5
choices), so the tensor reads name the real tensors of that space.

    python bench/synthetic_trace.py --n 1000000 --out-dir /tmp/synth
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from evotrace.search.simulated import run_simulated, simulation_spec

SPACE_OPTIONS = {"C": 8, "N": 1, "input_shape": [1, 8, 8], "num_classes": 10}


def generate(out_dir, n=1_000_000, workers=64, population=100, sample=5, seed=0, run="synthetic") -> tuple[Path, Path]:
    out = Path(out_dir)
    spec = simulation_spec("nb201", SPACE_OPTIONS, n, population, sample, workers, seed, run=run, study="synthetic")
    spec["transfer"]["cache"].update(policy="lru", capacity_mb=1)
    if run_simulated(spec, out) != 0:
        raise RuntimeError(f"simulated search for {out} failed")
    (out / "journal.done.jsonl").unlink(missing_ok=True)
    return out / "candidates.parquet", out / "tensor_reads.parquet"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="candidates N")
    ap.add_argument("--workers", type=int, default=64)
    ap.add_argument("--population", type=int, default=100)
    ap.add_argument("--sample", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--run", default="synthetic")
    ap.add_argument("--out-dir", required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    t0 = time.perf_counter()
    cand, reads = generate(args.out_dir, args.n, args.workers, args.population, args.sample, args.seed, args.run)
    print(f"{args.n} candidates simulated on {args.workers} virtual workers in {time.perf_counter() - t0:.1f} s "
          f"-> {cand}, {reads}")


if __name__ == "__main__":
    main()
