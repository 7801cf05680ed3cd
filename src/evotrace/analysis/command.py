"""`evotrace analyze` (every table of one research question -> CSV) and `evotrace summary` (key numbers
per run). Research-question modules are imported only when asked for (each pulls in its own dependencies).

Analysis tables travel to the figures as CSV; cells holding lists (prefixes, architecture sequences)
are written as JSON and decoded on load by `write_table`/`read_table`, the one place that knows it."""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from . import RQS
from .common import is_ok


# --- tables as CSV -------------------------------------------------------------------------------

def _is_listlike(x) -> bool:
    return isinstance(x, (list, tuple, np.ndarray, dict))


def _to_json(x):
    if isinstance(x, np.ndarray):
        x = x.tolist()
    return json.dumps(x, default=lambda v: v.item() if isinstance(v, np.generic) else str(v))


def write_table(df: pd.DataFrame, path) -> None:
    """CSV with list/tuple/array/dict cells stored as JSON text, so that read_table restores them."""
    out = df.copy(deep=False)
    for col in out.columns:
        if out[col].dtype == object and out[col].map(_is_listlike).any():
            out[col] = out[col].map(lambda x: _to_json(x) if _is_listlike(x) else x)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(path, index=False)


def _json_column(s: pd.Series) -> bool:
    values = s.dropna()
    if values.empty or not all(isinstance(v, str) for v in values):
        return False
    first, last = values.str[0], values.str[-1]
    return bool((((first == "[") & (last == "]")) | ((first == "{") & (last == "}"))).all())


def read_table(path) -> pd.DataFrame:
    """Inverse of write_table: text columns whose every cell is a JSON array or object become lists/dicts."""
    df = pd.read_csv(path)
    for col in df.columns:
        if not pd.api.types.is_numeric_dtype(df[col]) and _json_column(df[col]):
            try:
                df[col] = pd.Series([json.loads(v) if isinstance(v, str) else v for v in df[col]], index=df.index, dtype=object)
            except json.JSONDecodeError:
                pass
    return df


def read_tables(tables_dir) -> dict[str, pd.DataFrame]:
    return {p.stem: read_table(p) for p in sorted(Path(tables_dir).glob("*.csv"))}


# --- analyze -------------------------------------------------------------------------------------

def rq_module(rq: str, package: str = "evotrace.analysis"):
    """The module of one research question (one of RQS) in `package`."""
    if rq not in RQS:
        raise KeyError(f"unknown research question {rq!r}; known: {list(RQS)}")
    return importlib.import_module(f"{package}.{rq}")


def load_params(config_json, traces_dir=None, runs: dict | None = None) -> dict:
    """params of the TABLES/FIGURES contract: the study's analysis options and the runs' search parameters."""
    config = json.loads(Path(config_json).read_text()) if config_json else {}
    if runs is None and traces_dir is not None:
        from ..consolidate import load_runs

        runs = load_runs(traces_dir)
    return {"analysis": config.get("analysis", {}), "runs": runs or {}}


def analyze(rq: str, traces_dir, config_json, out_dir, tables=None, log=sys.stderr) -> dict[str, float]:
    """Run TABLES of research question `rq` (all, or the names in `tables`) and write <name>.csv each.
    Returns the seconds each table took."""
    from ..consolidate import load_traces

    module = rq_module(rq)
    names = list(tables) if tables else list(module.TABLES)
    unknown = [n for n in names if n not in module.TABLES]
    if unknown:
        raise KeyError(f"{rq} has no table(s) {', '.join(unknown)}; it has {', '.join(module.TABLES)}")
    candidates, tensor_reads, runs = load_traces(traces_dir)
    params = load_params(config_json, runs=runs)
    seconds = {}
    for name in names:
        t0 = time.perf_counter()
        result = module.TABLES[name](candidates, tensor_reads, params)
        if not isinstance(result, pd.DataFrame):
            raise TypeError(f"{rq}.TABLES[{name!r}] returned {type(result).__name__}, not a DataFrame")
        write_table(result, Path(out_dir) / f"{name}.csv")
        seconds[name] = time.perf_counter() - t0
        if log:
            print(f"{rq}.{name}: {len(result)} rows, {seconds[name]:.2f} s", file=log)
    return seconds


def report_errors(command: str, fn, *args) -> int:
    """Exit status of a subcommand: 0 when fn(*args) returns, 1 with a one-line message for a bad trace
    (TraceError) or an unknown research question, table or figure (KeyError)."""
    from ..trace import TraceError

    try:
        fn(*args)
    except (TraceError, KeyError) as err:
        print(f"evotrace {command}: error: {err.args[0] if isinstance(err, KeyError) else err}", file=sys.stderr)
        return 1
    return 0


def _analyze_main(args) -> int:
    return report_errors("analyze", analyze, args.rq, args.traces_dir, args.config_json, args.out_dir, args.tables)


# --- summary -------------------------------------------------------------------------------------

def summary_table(candidates: pd.DataFrame, tensor_reads: pd.DataFrame) -> pd.DataFrame:
    """Key numbers of every run: outcome, pace, quality and the transfer-learning I/O."""
    c = candidates
    ok = is_ok(c)
    frame = pd.DataFrame(
        {
            "run": c["run"],
            "ok": ok,
            "quality": c["quality"].where(ok),
            "end_time": c["end_time"],
            "train_seconds": c["train_seconds"],
            "transferred": c["donor_id"].notna() & (c["n_transferred_tensors"].fillna(0) > 0),
            "prefix_len": c["prefix_len"].where(c["donor_id"].notna()),
            "bytes_read": c["bytes_read"].fillna(0),
            "bytes_written": c["bytes_written"].fillna(0),
        }
    )
    g = frame.groupby("run", sort=True)
    out = pd.DataFrame(
        {
            "candidates": g.size(),
            "ok": g["ok"].sum(),
            "best_quality": g["quality"].max(),
            "wall_seconds": g["end_time"].max(),
            "mean_train_seconds": g["train_seconds"].mean(),
            "fraction_transferred": g["transferred"].mean(),
            "mean_prefix_len": g["prefix_len"].mean(),
            "bytes_read": g["bytes_read"].sum(),
            "bytes_written": g["bytes_written"].sum(),
        }
    )
    out.insert(2, "failed", out["candidates"] - out["ok"])
    best = frame[frame["quality"].notna()].sort_values(["run", "quality", "end_time"], ascending=[True, False, True])
    out.insert(4, "time_to_best_seconds", best.groupby("run")["end_time"].first())
    out.insert(6, "candidates_per_minute", out["candidates"] / (out["wall_seconds"] / 60.0))
    if len(tensor_reads):
        out["cache_hit_rate"] = tensor_reads.groupby("run")["cache_hit"].mean()
    else:
        out["cache_hit_rate"] = np.nan
    return out.reset_index()


def _summary_main(args) -> int:
    from ..consolidate import load_traces
    from ..trace import TraceError

    try:
        candidates, tensor_reads, _ = load_traces(args.traces_dir)
    except TraceError as err:
        print(f"evotrace summary: error: {err}", file=sys.stderr)
        return 1
    write_table(summary_table(candidates, tensor_reads), args.out)
    return 0


def register(sub) -> None:
    p = sub.add_parser("analyze", help="compute the tables of one research question from the study traces")
    p.add_argument("--rq", required=True, choices=RQS)
    p.add_argument("--traces-dir", required=True, help="results/<study>/traces")
    p.add_argument("--config-json", required=True, help="the whole study config as JSON")
    p.add_argument("--out-dir", required=True, help="results/<study>/tables/<rq>")
    p.add_argument("--tables", nargs="+", help="only these tables (default: all of the module's TABLES)")
    p.set_defaults(func=_analyze_main)

    s = sub.add_parser("summary", help="one row of key numbers per run")
    s.add_argument("--traces-dir", required=True)
    s.add_argument("--out", required=True, help="summary.csv")
    s.set_defaults(func=_summary_main)
