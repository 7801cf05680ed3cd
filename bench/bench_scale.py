"""The master at scale: simulated searches (evotrace.search.simulated, the real master and Algorithm 1)
at several (N, W), each in its own process so that its peak resident memory is its own. The master's
time per candidate is the CPU time of the search loop minus the CPU time spent computing what the virtual
workers report (CPU, not wall: the machine is shared), per window of 1,000 gathered candidates in steady
state, from the second thousand (the first W include the start) to the last before the final W (DeepHyper
gathers those together after the last submission). With --repeat R each setting runs R times and each
window keeps its cheapest run: the workload is deterministic, a shared host only adds time.

Each `setting` line gives wall time, CPU user time, peak RSS, and the first and last window's cost and tensor
reads per candidate. The master's work per candidate is a constant plus a part per read, and reads per
candidate triple as the search converges, so the last thousand costs more than the first at any N. Hence:
  fit_ms      a + b per read, least squares over the windows up to 20k (where reads still rise), and the
              last window's cost over the fit's prediction for its reads (1.0: no cost that grows with N);
  converged   the mean cost over the two halves of the converged search (after N/5), at equal reads: flat
              in N means a ratio of 1;
  flat_in_n   the last thousand of two settings with the same W.
Beside it, the same workload (space, N, W, p, s, quality and time model) through stock DeepHyper
RegularizedEvolution and evaluator bookkeeping, where that finishes in reasonable time (--stock-max).

Targets on a 2-core machine: N=100,000 with W=1,000 in at most 10 minutes, peak RSS at most 2 GiB,
master time per candidate at 100k at most 1.3x that at 1k (printed raw and at equal reads).

    python bench/bench_scale.py                                  # 1k/39, 10k/256, 10k/1000, 100k/1000
    python bench/bench_scale.py --settings 20000:1000 --repeat 3  # one setting, cheapest of three runs
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
FIT_UPTO = 20000  # the fit's windows: where reads per candidate still rise
TARGET_SECONDS, TARGET_MIB, TARGET_GROWTH = 600.0, 2048.0, 1.3


def _series(marks, n, w):
    """Per window of WINDOW gathered candidates in steady state (from the second thousand to the last before
    the final W, which DeepHyper gathers together after the last submission): (end, master ms per candidate,
    tensor reads per candidate)."""
    out = []
    first = min(WINDOW, max(0, n - w - WINDOW))  # a search shorter than 2k + W: its one window from the start
    for lo in range(first, max(first, n - w - WINDOW) + 1, WINDOW):
        a = next(m for m in marks if m[0] >= lo)
        b = next(m for m in reversed(marks) if m[0] <= lo + WINDOW)
        count = max(1, b[0] - a[0])
        out.append((lo + WINDOW, ((b[1] - a[1]) - (b[2] - a[2])) / count * 1e3,
                    (b[3] - a[3]) / count if len(a) > 3 else float("nan")))
    return out


def _halves(series, n):
    """Mean master ms and reads per candidate over the windows of the converged search (after n/5), in its
    first and its second half: flat in N means the same cost for the same reads, all windows counted (a
    window that writes a batch of trace rows costs more than one that does not)."""
    converged = [(end, ms, reads) for end, ms, reads in series if end > n // 5]
    middle = n // 5 + (n - n // 5) // 2
    out = []
    for part in ([x for x in converged if x[0] <= middle], [x for x in converged if x[0] > middle]):
        out.append((part[0][0] - WINDOW, part[-1][0], sum(x[1] for x in part) / len(part),
                    sum(x[2] for x in part) / len(part)) if part else None)
    return out


def _fit(series, upto):
    """Least squares ms = a + b * reads over the windows that end by `upto` gathered candidates, where the
    search converges and reads per candidate rise: the cost of a candidate as a function of its reads."""
    import numpy as np

    early = [(ms, reads) for end, ms, reads in series if end <= upto]
    ms, reads = np.array(early).T
    b, a = np.polyfit(reads, ms, 1)
    return a, b


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
            reads[0] += sum(job.metadata["tensor_reads"]["n"] for job in done)
            marks.append((self.num_jobs_gathered, time.process_time(), self.worker_seconds, reads[0]))
            return done

    t0 = time.perf_counter()
    evaluator = Marked(SimulatedWorkers(spec), num_workers=w)
    assert run_master(evaluator, spec, out, w) == 0
    return {"wall_s": time.perf_counter() - t0, "series": _series(marks, n, w), "virtual_s": evaluator.now}


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
    return {"wall_s": time.perf_counter() - t0, "series": _series(marks, n, w)}


def run_setting(kind: str, n: int, w: int, tmp: Path, repeat: int = 1) -> dict:
    """The setting run `repeat` times, each in a fresh process. The workload is deterministic (same seed, same
    reads), the host is not: each window keeps its cheapest run (as timeit keeps its best), since a shared
    machine only ever adds time. Wall time: the fastest run; peak RSS: the largest."""
    runs = []
    for r in range(repeat):
        proc = subprocess.run([sys.executable, __file__, "--child", kind, "--n", str(n), "--w", str(w), "--out",
                               str(tmp / f"{kind}-{n}-{w}-{r}")], stdout=subprocess.PIPE, text=True)
        if proc.returncode:
            return {"error": f"exit {proc.returncode}"}
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    series = [(end, min(run["series"][i][1] for run in runs), reads)
              for i, (end, _, reads) in enumerate(runs[0]["series"])]
    out = {"wall_s": min(run["wall_s"] for run in runs), "user_s": min(run["user_s"] for run in runs),
           "peak_rss_mib": max(run["peak_rss_mib"] for run in runs), "series": series,
           "first_ms": series[0][1], "last_ms": series[-1][1], "first_reads": series[0][2], "last_reads": series[-1][2]}
    if kind == "ours" and len(series) >= 3:
        out["fit"] = _fit(series, max(series[2][0], min(n // 2, FIT_UPTO)))
        out["halves"] = _halves(series, n)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--settings", nargs="+", default=["1000:39", "10000:256", "10000:1000", "100000:1000"], help="N:W pairs")
    ap.add_argument("--repeat", type=int, default=1, help="runs per setting; each window keeps its cheapest")
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
    nan = float("nan")
    done = []
    with tempfile.TemporaryDirectory(prefix="evotrace-scale-") as tmp:
        for n, w in settings:
            ours = run_setting("ours", n, w, Path(tmp), args.repeat)
            if "error" in ours:
                print(f"setting: N={n} W={w} error={ours['error']}", flush=True)
                continue
            a, b = ours.get("fit", (nan, nan))
            ours["equal_reads"] = ours["last_ms"] / (a + b * ours["last_reads"])
            line = (f"setting: N={n} W={w} wall_s={ours['wall_s']:.1f} user_s={ours['user_s']:.1f} "
                    f"master_ms_per_candidate_first1k={ours['first_ms']:.3f} "
                    f"master_ms_per_candidate_last1k={ours['last_ms']:.3f} peak_rss_mib={ours['peak_rss_mib']:.0f} "
                    f"reads_per_candidate_first1k={ours['first_reads']:.1f} "
                    f"reads_per_candidate_last1k={ours['last_reads']:.1f} "
                    f"fit_ms={a:.3f}+{b * 1e3:.2f}us/read last1k_over_fit={ours['equal_reads']:.2f}")
            if n <= args.stock_max:
                stock = run_setting("stock", n, w, Path(tmp))
                if "error" not in stock:
                    line += (f" | stock DeepHyper RegularizedEvolution: wall_s={stock['wall_s']:.1f} "
                             f"user_s={stock['user_s']:.1f} peak_rss_mib={stock['peak_rss_mib']:.0f} "
                             f"master_ms_per_candidate_last1k={stock['last_ms']:.3f} "
                             f"ratio_stock_over_ours={stock['last_ms'] / ours['last_ms']:.2f}")
            else:
                line += " | stock DeepHyper: not run (N > --stock-max: its per-candidate cost grows with N)"
            print(line, flush=True)
            done.append((n, w, ours))
    if not done:
        raise SystemExit("no setting ran")
    for n, w, ours in done:
        first, second = ours.get("halves", (None, None))
        if first and second:
            print(f"converged: N={n} W={w} candidates {first[0]}-{first[1]} {first[2]:.3f} ms ({first[3]:.1f} "
                  f"reads/candidate), {second[0]}-{second[1]} {second[2]:.3f} ms ({second[3]:.1f}): "
                  f"ratio {second[2] / first[2]:.2f}")
    # Flat in N means equal cost at equal convergence: the last thousand of a shorter search with the same W
    # reads about as many tensors per candidate as the last thousand at N=100k, while the first thousand
    # reads a third of that (a converging search transfers longer prefixes), which the growth target counts.
    for (n1, w1, a), (n2, w2, b) in zip(done, done[1:]):
        if w1 == w2 and n2 > n1:
            print(f"flat_in_n: W={w1} last1k N={n1} {a['last_ms']:.3f} ms ({a['last_reads']:.1f} reads/candidate), "
                  f"N={n2} {b['last_ms']:.3f} ms ({b['last_reads']:.1f} reads/candidate): "
                  f"ratio {b['last_ms'] / a['last_ms']:.2f}")
    n, w, ours = done[-1]
    growth = ours["last_ms"] / ours["first_ms"]
    print(f"targets: wall {ours['wall_s']:.0f} s {'<=' if ours['wall_s'] <= TARGET_SECONDS else '>'} {TARGET_SECONDS:.0f} s; "
          f"peak {ours['peak_rss_mib']:.0f} MiB {'<=' if ours['peak_rss_mib'] <= TARGET_MIB else '>'} {TARGET_MIB:.0f} MiB; "
          f"growth {growth:.2f}x {'<=' if growth <= TARGET_GROWTH else '>'} {TARGET_GROWTH}x "
          f"(reads per candidate {ours['first_reads']:.0f} -> {ours['last_reads']:.0f}); "
          f"at equal reads {ours['equal_reads']:.2f}x {'<=' if ours['equal_reads'] <= TARGET_GROWTH else '>'} {TARGET_GROWTH}x")
    print(f"scale: N={n} W={w} wall_s={ours['wall_s']:.1f} user_s={ours['user_s']:.1f} "
          f"master_ms_per_candidate_1k={ours['first_ms']:.3f} "
          f"master_ms_per_candidate_{n // 1000}k={ours['last_ms']:.3f} peak_rss_mib={ours['peak_rss_mib']:.0f}")


if __name__ == "__main__":
    main()
