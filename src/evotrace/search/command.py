"""`evotrace search`: launched as `mpiexec -n W+1 evotrace search ...` by the search rule."""

from __future__ import annotations

import logging
import sys


def _search(args) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for noisy in ("deephyper", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from ..runspec import load_spec

    spec = load_spec(args.spec)
    if spec["evaluation"]["kind"] == "simulated":  # virtual workers: one process, no mpiexec
        from .simulated import run_simulated

        return run_simulated(spec, args.out_dir)
    from .driver import run

    return run(args.spec, args.out_dir, args.cache_dir)


def register(sub) -> None:
    p = sub.add_parser("search", help="run one traced regularized-evolution search (under mpiexec)")
    p.add_argument("--spec", required=True, help="the run spec written by `evotrace setup`")
    p.add_argument("--out-dir", required=True, help="where candidates.parquet and tensor_reads.parquet go")
    p.add_argument("--cache-dir", help="node-local directory of the worker tensor caches (Polaris: /local/scratch)")
    p.set_defaults(func=_search)
