"""Time consolidation and every analysis table (TABLES of evotrace.analysis.rq1..rq4, those that exist)
on synthetic traces of 100,000 and 1,000,000 candidates. Each size runs in its own process, so the peak
resident memory reported is that size's alone; the trace is generated beforehand in another process.

Targets at 1M candidates on a 2-core machine: total <= 60 s, peak <= 4 GiB, 1M/100k cost <= 12x. They were
set for a hand-written generator's 6 million reads; the simulator's 1M trace holds 71.8 million (72 per
candidate, as a converged search transfers most of a model), and the tensor reads frame alone is 3 GiB.

    python bench/bench_analysis.py                 # both sizes
    python bench/bench_analysis.py --sizes 100000  # one size
    python bench/bench_analysis.py --traces-dir /tmp/synth   # keep the traces, reuse them next time
"""

from __future__ import annotations

import argparse
import importlib
import json
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS, TARGET_GIB, TARGET_GROWTH = 60.0, 4.0, 12.0


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout


def child(traces: Path, work: Path, limit: float) -> dict:
    """Consolidate, load, and run every table; one JSON line on stdout."""
    from evotrace.consolidate import consolidate, load_traces

    steps, errors = {}, {}
    t0 = time.perf_counter()
    consolidate([traces / "candidates.parquet"], [traces / "tensor_reads.parquet"], work / "traces")
    steps["consolidate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    candidates, tensor_reads, runs = load_traces(work / "traces")
    steps["load_traces"] = time.perf_counter() - t0
    analysis = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["analysis"]
    analysis["trie"]["runs"] = list(runs)
    params = {"analysis": analysis, "runs": runs}
    signal.signal(signal.SIGALRM, _alarm)
    for rq in ("rq1", "rq2", "rq3", "rq4"):
        try:
            module = importlib.import_module(f"evotrace.analysis.{rq}")
        except ModuleNotFoundError:
            errors[rq] = "module not found"
            continue
        for name, fn in module.TABLES.items():
            t0 = time.perf_counter()
            signal.setitimer(signal.ITIMER_REAL, limit)
            try:
                fn(candidates, tensor_reads, params)
            except _Timeout:
                errors[f"{rq}.{name}"] = f"stopped after {limit:.0f} s"
            except Exception as err:  # report and go on: the bench measures, the tests judge
                errors[f"{rq}.{name}"] = f"{type(err).__name__}: {err}"
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            steps[f"{rq}.{name}"] = time.perf_counter() - t0
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB
    return {"steps": steps, "errors": errors, "peak_gib": peak_gib, "candidates": len(candidates), "reads": len(tensor_reads)}


def run_size(n: int, tmp: Path, limit: float, traces_dir: Path | None = None) -> dict:
    """Time the analyses on a trace of n candidates, generated first unless `traces_dir` holds one from an
    earlier run (the 1M trace takes about 20 minutes of CPU to draw)."""
    traces = (traces_dir or tmp) / f"synthetic-{n}"
    t0 = time.perf_counter()
    if not (traces / "tensor_reads.parquet").exists():
        subprocess.run([sys.executable, str(ROOT / "bench" / "synthetic_trace.py"), "--n", str(n), "--out-dir", str(traces)],
                       check=True, stdout=subprocess.DEVNULL)
    generated = time.perf_counter() - t0
    out = subprocess.run([sys.executable, __file__, "--child", str(traces), "--work", str(tmp / f"work-{n}"), "--limit", str(limit)],
                         check=True, stdout=subprocess.PIPE, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["generate_seconds"] = generated
    return result


def report(results: dict[int, dict]) -> None:
    sizes = sorted(results)
    steps = list(dict.fromkeys(s for n in sizes for s in results[n]["steps"]))
    print(f"{'step':40s}" + "".join(f"{n:>14,d}" for n in sizes) + ("        ratio" if len(sizes) == 2 else ""))
    for step in steps:
        vals = [results[n]["steps"].get(step) for n in sizes]
        ratio = f"{vals[1] / vals[0]:12.1f}x" if len(sizes) == 2 and all(vals) and vals[0] > 0 else ""
        print(f"{step:40s}" + "".join(f"{v:13.2f}s" if v is not None else f"{'-':>14s}" for v in vals) + ratio)
    totals = [sum(results[n]["steps"].values()) for n in sizes]
    print(f"{'TOTAL':40s}" + "".join(f"{t:13.2f}s" for t in totals) + (f"{totals[1] / totals[0]:12.1f}x" if len(sizes) == 2 else ""))
    print(f"{'peak memory':40s}" + "".join(f"{results[n]['peak_gib']:11.2f}GiB" for n in sizes))
    print(f"{'(trace generation, not counted)':40s}" + "".join(f"{results[n]['generate_seconds']:13.2f}s" for n in sizes))
    for n in sizes:
        for step, err in results[n]["errors"].items():
            print(f"  {n:,d}: {step}: {err}")
    big = max(sizes)
    slow = sorted(((v, s) for s, v in results[big]["steps"].items()), reverse=True)[:5]
    print("slowest at", f"{big:,d}:", ", ".join(f"{s} {v:.1f} s" for v, s in slow))
    verdict = [f"total {totals[-1]:.1f} s {'<=' if totals[-1] <= TARGET_SECONDS else '>'} {TARGET_SECONDS:.0f} s",
               f"peak {results[big]['peak_gib']:.2f} GiB {'<=' if results[big]['peak_gib'] <= TARGET_GIB else '>'} {TARGET_GIB:.0f} GiB"]
    if len(sizes) == 2:
        g = totals[1] / totals[0]
        verdict.append(f"growth {g:.1f}x {'<=' if g <= TARGET_GROWTH else '>'} {TARGET_GROWTH:.0f}x")
    print("targets:", "; ".join(verdict))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--limit", type=float, default=300.0, help="seconds after which one table is stopped")
    ap.add_argument("--json", help="also write the raw results here")
    ap.add_argument("--traces-dir", type=Path, help="keep the traces here (synthetic-N/) and reuse those already there")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(Path(args.child), Path(args.work), args.limit)))
        return
    with tempfile.TemporaryDirectory(prefix="evotrace-bench-") as tmp:
        results = {n: run_size(n, Path(tmp), args.limit, args.traces_dir) for n in args.sizes}
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
