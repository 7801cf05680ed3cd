"""The master at scale: simulated searches (evotrace.search.simulated, the real master and Algorithm 1)
at several (N, W), each in its own process so that its peak resident memory is its own. The master's
time per candidate is the CPU time of the search loop minus the CPU time spent computing what the virtual
workers report (CPU, not wall: the machine is shared), over two windows of 1,000 gathered candidates in
steady state: the second thousand (the first W include the start) and the last thousand before the final
W (DeepHyper gathers those together after the last submission). Each line also gives the child's wall
time, CPU user time, peak RSS and tensor reads per candidate in both windows: the master's work per
candidate is a constant plus a part per read, and reads per candidate triple as the search converges, so
the last thousand costs more than the first at any N. Flat in N (no per-call scan) shows as equal cost at
equal convergence: a `flat_in_n` line compares the last thousand of two settings with the same W.
Beside it, the same workload (space, N, W, p, s, quality and time model) through stock DeepHyper
RegularizedEvolution and evaluator bookkeeping, where that finishes in reasonable time (--stock-max).

Targets on a 2-core machine: N=100,000 with W=1,000 in at most 10 minutes, peak RSS at most 2 GiB,
master time per candidate at 100k at most 1.3x that at 1k.

    python bench/bench_scale.py                          # 1k/39, 10k/256, 10k/1000, 100k/1000
    python bench/bench_scale.py --settings 20000:1000    # one setting
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPACE = ("nb201", {"C": 8, "N": 1, "input_shape": [1, 8, 8]})
P, S, SEED, WINDOW = 100, 5, 0, 1000
TARGET_SECONDS, TARGET_MIB, TARGET_GROWTH = 600.0, 2048.0, 1.3


def _windows(marks, n, w):
    """Master milliseconds per candidate in the early and the late steady-state window."""
    early = min(WINDOW, max(0, n - w - WINDOW))
    late = max(early, n - w - WINDOW)
    return _window_ms(marks, early, early + WINDOW), _window_ms(marks, late, late + WINDOW)


def _window(marks, lo, hi):
    a = next(m for m in marks if m[0] >= lo)
    b = next(m for m in reversed(marks) if m[0] <= hi)
    return a, b


def _window_ms(marks, lo, hi):
    """Master milliseconds per candidate between `lo` and `hi` gathered candidates."""
    a, b = _window(marks, lo, hi)
    return ((b[1] - a[1]) - (b[2] - a[2])) / max(1, b[0] - a[0]) * 1e3


def _reads(marks, n, w):
    """Tensor reads per candidate in the two windows: the master's work per candidate grows with them (a
    converging search transfers longer prefixes), whatever N is."""
    early = min(WINDOW, max(0, n - w - WINDOW))
    late = max(early, n - w - WINDOW)
    out = []
    for lo in (early, late):
        a, b = _window(marks, lo, lo + WINDOW)
        out.append((b[3] - a[3]) / max(1, b[0] - a[0]))
    return out


def child_ours(n: int, w: int, out: Path) -> dict:
    from evotrace.search.driver import run_master
    from evotrace.search.evaluators import SimulatedEvaluator
    from evotrace.search.simulated import SimulatedWorkers, simulation_spec

    spec = simulation_spec(SPACE[0], SPACE[1], n, P, S, w, SEED)
    marks = []
    reads = [0]

    class Marked(SimulatedEvaluator):
        def gather(self, type, size=1):
            done = super().gather(type, size)
            reads[0] += sum(len(job.metadata["tensor_reads"]["tensor_id"]) for job in done)
            marks.append((self.num_jobs_gathered, time.process_time(), self.worker_seconds, reads[0]))
            return done

    t0 = time.perf_counter()
    evaluator = Marked(SimulatedWorkers(spec), num_workers=w)
    assert run_master(evaluator, spec, out, w) == 0
    first, last = _windows(marks, n, w)
    first_reads, last_reads = _reads(marks, n, w)
    return {"wall_s": time.perf_counter() - t0, "first_ms": first, "last_ms": last, "virtual_s": evaluator.now,
            "first_reads": first_reads, "last_reads": last_reads}


def child_stock(n: int, w: int, out: Path) -> dict:
    from deephyper.hpo import RegularizedEvolution

    from evotrace.search.evaluators import StockSimulatedEvaluator, problem
    from evotrace.search.models import make_model
    from evotrace.spaces import make_space

    space = make_space(SPACE[0], **SPACE[1])
    model = make_model("synthetic", space, SEED)
    counter = iter(range(10**9))

    def run(args, worker, now):
        seq = tuple(int(args[f"x{i}"]) for i in range(len(space.num_choices)))
        quality, seconds = model.outcome(next(counter), seq, None)
        return seconds, {"objective": quality, "metadata": {}}

    marks = []

    class Marked(StockSimulatedEvaluator):
        def gather(self, type, size=1):
            done = super().gather(type, size)
            marks.append((self.num_jobs_gathered, time.process_time(), self.worker_seconds))
            return done

    t0 = time.perf_counter()
    search = RegularizedEvolution(problem(space.num_choices), random_state=SEED, log_dir=str(out),
                                  checkpoint_history_to_csv=False, population_size=P, sample_size=S)
    search.search(Marked(run, num_workers=w), max_evals=n, max_evals_strict=True)
    first, last = _windows(marks, n, w)
    return {"wall_s": time.perf_counter() - t0, "first_ms": first, "last_ms": last}


def run_setting(kind: str, n: int, w: int, tmp: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", kind, "--n", str(n), "--w", str(w), "--out",
                           str(tmp / f"{kind}-{n}-{w}")], stdout=subprocess.PIPE, text=True)
    if proc.returncode:
        return {"error": f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--settings", nargs="+", default=["1000:39", "10000:256", "10000:1000", "100000:1000"], help="N:W pairs")
    ap.add_argument("--stock-max", type=int, default=10000, help="largest N run through stock DeepHyper")
    ap.add_argument("--child", choices=["ours", "stock"], help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--w", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        import logging

        logging.basicConfig(level=logging.WARNING)
        result = (child_ours if args.child == "ours" else child_stock)(args.n, args.w, Path(args.out))
        usage = resource.getrusage(resource.RUSAGE_SELF)
        result.update(peak_rss_mib=usage.ru_maxrss / 1024, user_s=usage.ru_utime)
        print(json.dumps(result))
        return
    settings = [tuple(int(v) for v in s.split(":")) for s in args.settings]
    last = None
    done = []
    with tempfile.TemporaryDirectory(prefix="evotrace-scale-") as tmp:
        for n, w in settings:
            ours = run_setting("ours", n, w, Path(tmp))
            line = (f"setting: N={n} W={w} wall_s={ours.get('wall_s', float('nan')):.1f} "
                    f"user_s={ours.get('user_s', float('nan')):.1f} "
                    f"master_ms_per_candidate_first1k={ours.get('first_ms', float('nan')):.3f} "
                    f"master_ms_per_candidate_last1k={ours.get('last_ms', float('nan')):.3f} "
                    f"peak_rss_mib={ours.get('peak_rss_mib', float('nan')):.0f} "
                    f"reads_per_candidate_first1k={ours.get('first_reads', float('nan')):.1f} "
                    f"reads_per_candidate_last1k={ours.get('last_reads', float('nan')):.1f}")
            if n <= args.stock_max:
                stock = run_setting("stock", n, w, Path(tmp))
                if "error" not in stock:
                    line += (f" | stock DeepHyper RegularizedEvolution: wall_s={stock['wall_s']:.1f} "
                         f"user_s={stock['user_s']:.1f} peak_rss_mib={stock['peak_rss_mib']:.0f} "
                             f"master_ms_per_candidate_last1k={stock['last_ms']:.3f} "
                             f"ratio_stock_over_ours={stock['last_ms'] / ours['last_ms']:.2f}")
            else:
                line += " | stock DeepHyper: not run (N > --stock-max: its per-candidate cost grows with N)"
            print(line + (f" error={ours['error']}" if "error" in ours else ""), flush=True)
            last = (n, w, ours)
            done.append((n, w, ours))
    # Flat in N means equal cost at equal convergence: the last thousand of a shorter search with the same W
    # reads about as many tensors per candidate as the last thousand at N=100k, while the first thousand
    # reads a third of that (a converging search transfers longer prefixes), which the growth target counts.
    for (n1, w1, a), (n2, w2, b) in zip(done, done[1:]):
        if w1 == w2 and n2 > n1 and "last_ms" in a and "last_ms" in b:
            print(f"flat_in_n: W={w1} last1k N={n1} {a['last_ms']:.3f} ms ({a['last_reads']:.1f} reads/candidate), "
                  f"N={n2} {b['last_ms']:.3f} ms ({b['last_reads']:.1f} reads/candidate): "
                  f"ratio {b['last_ms'] / a['last_ms']:.2f}")
    n, w, ours = last
    growth = ours["last_ms"] / ours["first_ms"]
    print(f"targets: wall {ours['wall_s']:.0f} s {'<=' if ours['wall_s'] <= TARGET_SECONDS else '>'} {TARGET_SECONDS:.0f} s; "
          f"peak {ours['peak_rss_mib']:.0f} MiB {'<=' if ours['peak_rss_mib'] <= TARGET_MIB else '>'} {TARGET_MIB:.0f} MiB; "
          f"growth {growth:.2f}x {'<=' if growth <= TARGET_GROWTH else '>'} {TARGET_GROWTH}x")
    print(f"scale: N={n} W={w} wall_s={ours['wall_s']:.1f} user_s={ours['user_s']:.1f} "
          f"master_ms_per_candidate_1k={ours['first_ms']:.3f} "
          f"master_ms_per_candidate_{n // 1000}k={ours['last_ms']:.3f} peak_rss_mib={ours['peak_rss_mib']:.0f}")


if __name__ == "__main__":
    main()
