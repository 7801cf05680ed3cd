"""Search benchmarks (figures, not tests), each on real mpiexec ranks with a sleep workload:

1. master overhead per candidate: `evotrace search` against DeepHyper's stock RegularizedEvolution on the
   same no-op workload, W workers (target: ours <= 1.10x stock);
2. tracing on vs off (the journal and per-candidate records) at 0.1 s evaluations (target <= 1 % wall time);
3. worker utilization with 2 workers at 0.1 s evaluations: busy time / (W x span) from the trace (target >= 95 %).

    python bench/bench_search.py [--n 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from evotrace.config import defaults

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MPIEXEC = str(BIN / "mpiexec") if (BIN / "mpiexec").exists() else shutil.which("mpiexec")


def spec(n, p, s, workers, seconds, journal=True):
    return {"study": "bench", "run": "bench", "space": "nb201",
            "space_options": {"C": 4, "N": 1, "input_shape": [1, 8, 8], "num_classes": 10},
            "num_choices": [5] * 6, "space_size": "15625", "dataset": "none", "data": "none", "epochs": 0, "seed": 1,
            "search": {"candidates": n, "population": p, "sample": s, "workers": workers, "torch_threads": 1,
                       "mutation": {"positions": "uniform"}, "quanta": 1, "stage_boundary": "wait"},
            "training": defaults("training"), "transfer": {**defaults("transfer"), "enabled": False},
            "evaluation": {"kind": "sleep", "seconds": seconds}, "trace": journal}


def ours(n, p, s, workers, seconds, journal=True) -> tuple[float, pd.DataFrame]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.json"
        path.write_text(json.dumps(spec(n, p, s, workers, seconds, journal)))
        proc = subprocess.run([MPIEXEC, "-n", str(workers + 1), str(BIN / "evotrace"), "search", "--spec", str(path),
                               "--out-dir", tmp], capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(proc.stderr[-2000:])
        trace = pd.read_parquet(Path(tmp) / "candidates.parquet") if journal else None
        wall = float(next(line for line in proc.stderr.splitlines() if "search loop took" in line).split("took ")[1].split(" s")[0])
        return wall, trace


def steady_per_candidate(gathered: pd.Series, workers: int) -> float:
    """Seconds per candidate once every worker has started (its first job pays imports and set-up)."""
    t = gathered.sort_values().to_numpy()
    return (t[-1] - t[workers]) / (len(t) - 1 - workers)


def stock(n, p, s, workers, seconds) -> float:
    """Steady-state seconds per candidate of DeepHyper's stock RegularizedEvolution."""
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([MPIEXEC, "-n", str(workers + 1), sys.executable, str(ROOT / "bench" / "_stock_regevo.py"),
                               str(n), str(p), str(s), str(seconds), tmp], capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(proc.stderr[-2000:])
        return json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("{")))["per_candidate"]


def utilization(trace: pd.DataFrame, workers: int) -> float:
    busy = (trace["end_time"] - trace["start_time"]).sum()
    span = trace["end_time"].max() - trace["start_time"].min()
    return busy / (workers * span)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    n, p, s, w = a.n, 100, 5, a.workers

    ours_w, stock_w = [], []
    for _ in range(a.repeats):
        stock_w.append(stock(n, p, s, w, 0.0))
        ours_w.append(steady_per_candidate(ours(n, p, s, w, 0.0)[1]["end_time"], w))
    o, st = statistics.median(ours_w), statistics.median(stock_w)
    print(f"1. no-op workload, N={n}, W={w}: time per candidate (steady state) ours {o * 1e3:.3f} ms, "
          f"stock DeepHyper RE {st * 1e3:.3f} ms, ratio {o / st:.3f} (target <= 1.10); "
          f"runs ours {', '.join(f'{x * 1e3:.3f}' for x in ours_w)}, stock {', '.join(f'{x * 1e3:.3f}' for x in stock_w)}")

    n2 = max(200, n // 5)
    on, off, util = [], [], []
    for _ in range(a.repeats):
        wall, trace = ours(n2, p, s, w, 0.1, journal=True)
        on.append(wall)
        util.append(utilization(trace, w))
        off.append(ours(n2, p, s, w, 0.1, journal=False)[0])
    print(f"2. 0.1 s evaluations, N={n2}, W={w}: wall time tracing on {statistics.median(on):.3f} s, off "
          f"{statistics.median(off):.3f} s, difference {100 * (statistics.median(on) / statistics.median(off) - 1):+.2f} % "
          f"(target <= 1 %)")
    print(f"3. worker utilization, W={w}, 0.1 s evaluations: median {100 * statistics.median(util):.2f} % "
          f"(runs: {', '.join(f'{100 * u:.2f}' for u in util)}; target >= 95 %)")


if __name__ == "__main__":
    main()
