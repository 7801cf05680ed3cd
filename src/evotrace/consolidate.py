"""Merge the per-run traces of a study into one candidates and one tensor-reads table, checking each
input on the way: the analyses of every research question read only these two files, so a malformed,
truncated or inconsistent run is caught here, with the file named, rather than in a figure."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .durable import atomic_write
from .trace import (
    CANDIDATES,
    TENSOR_READS,
    TraceError,
    iter_trace,
    read_candidates,
    read_frame,
    run_metadata,
    with_run_metadata,
)

__all__ = ["TraceError", "consolidate", "load_traces", "load_runs", "register"]

ROW_GROUP_ROWS = 256 * 1024  # a few MB per row group: column pruning stays cheap, statistics stay useful


def _runs_metadata(table: pa.Table, runs: list[str], path) -> dict[str, dict]:
    """Run parameters per run: a search writes one run's parameters, a consolidated trace {"runs": {...}}."""
    meta = run_metadata(table.schema)
    if "runs" in meta and isinstance(meta["runs"], dict):
        return {run: meta["runs"].get(run, {}) for run in runs}
    if len(runs) > 1 and meta:
        raise TraceError(f"{path}: holds runs {', '.join(runs)} but the parameters of only one")
    return {run: meta for run in runs}


def _check_candidates(table: pa.Table, path) -> dict[str, dict]:
    if table.num_rows == 0:
        raise TraceError(f"{path}: empty trace (no candidates)")
    encoded = pc.dictionary_encode(table.column("run").combine_chunks())
    runs = encoded.dictionary.to_pylist()
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    params = _runs_metadata(table, runs, path)
    job = table.column("job_id").to_numpy()
    for i, run in enumerate(runs):
        ids = np.sort(job if len(runs) == 1 else job[codes == i])
        n = len(ids)
        if (np.diff(ids) == 0).any():
            raise TraceError(f"{path}: run {run}: job_id is not unique")
        if ids[0] != 0 or ids[-1] != n - 1:
            raise TraceError(f"{path}: run {run}: job_id must be 0..{n - 1} (found {ids[0]}..{ids[-1]}): candidates are missing")
        expected = params[run].get("candidates")
        if expected is not None and int(expected) != n:
            raise TraceError(f"{path}: run {run}: {n} candidates, but the run metadata says {expected}")
    status = pc.unique(table.column("status")).to_pylist()
    if not set(status) <= {"ok", "failed"}:
        raise TraceError(f"{path}: status must be 'ok' or 'failed', found {sorted(set(status) - {'ok', 'failed'})}")
    ok_without_quality = pc.sum(pc.and_(pc.equal(table.column("status"), "ok"), pc.is_null(table.column("quality")))).as_py()
    if ok_without_quality:
        raise TraceError(f"{path}: {ok_without_quality} candidate(s) with status ok have no quality")
    return params


def _copy_tensor_reads(path, candidates: pa.Table, cand_path, writer) -> None:
    """Check the reads of one run batch by batch and write them on: 10^8 reads never sit in memory at once.
    Every read must belong to the runs and candidates of the paired candidates trace; an empty trace is
    only acceptable when no candidate of those runs transferred a tensor (a scratch run)."""
    cand_runs = set(pc.unique(candidates.column("run")).to_pylist())
    n = candidates.num_rows
    rows = outside = 0
    absent: set[str] = set()
    for batch in iter_trace(path, TENSOR_READS, ROW_GROUP_ROWS):
        absent |= set(pc.unique(batch.column("run")).to_pylist()) - cand_runs
        if len(cand_runs) == 1:
            job = batch.column("job_id").to_numpy()
            outside += int(((job < 0) | (job >= n)).sum())
        writer.write_table(batch.replace_schema_metadata(None).cast(writer.schema), row_group_size=ROW_GROUP_ROWS)
        rows += batch.num_rows
    if absent:
        raise TraceError(f"{path}: tensor reads of run(s) {', '.join(sorted(absent))} absent from {cand_path}")
    if outside:
        raise TraceError(f"{path}: {outside} tensor read(s) name a job_id outside 0..{n - 1} of {cand_path}")
    if not rows:
        transferred = pc.sum(candidates.column("n_transferred_tensors")).as_py() or 0
        if transferred:
            raise TraceError(f"{path}: empty trace, but {cand_path} reports {transferred} transferred tensors")


def consolidate(inputs, tensor_reads, out_dir) -> tuple[Path, Path]:
    """Check and concatenate per-run traces (tensor_reads[i] pairs with inputs[i]) into
    out_dir/candidates.parquet and out_dir/tensor_reads.parquet, metadata {"runs": {run: parameters}}."""
    inputs, tensor_reads = list(inputs), list(tensor_reads or [])
    if not inputs:
        raise TraceError("no candidates trace given")
    if tensor_reads and len(tensor_reads) != len(inputs):
        raise TraceError(f"{len(inputs)} candidates traces but {len(tensor_reads)} tensor-reads traces: give one per run, in the same order")
    runs: dict[str, dict] = {}
    origin: dict[str, str] = {}
    cand_tables = []
    for path in inputs:
        table = read_candidates(path)
        params = _check_candidates(table, path)
        for run in params:
            if run in runs:
                raise TraceError(f"{path}: run {run} also appears in {origin[run]}")
            origin[run] = str(path)
        runs.update(params)
        cand_tables.append(table.replace_schema_metadata(None))
    meta = {"runs": runs}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cand_out, reads_out = out_dir / "candidates.parquet", out_dir / "tensor_reads.parquet"
    schema = with_run_metadata(TENSOR_READS, meta)
    # the candidates are written once every read has passed its checks, and the reads renamed right after
    with atomic_write(reads_out) as tmp, pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        for path, reads, table in zip(inputs, tensor_reads, cand_tables):
            _copy_tensor_reads(reads, table, path, writer)
        _write(pa.concat_tables(cand_tables), with_run_metadata(CANDIDATES, meta), cand_out)
    return cand_out, reads_out


def _write(table: pa.Table, schema: pa.Schema, path: Path) -> None:
    """Write through a temporary name so that an interrupted job never leaves a plausible-looking trace."""
    with atomic_write(path) as tmp, pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        writer.write_table(table if table.schema.equals(schema) else table.cast(schema), row_group_size=ROW_GROUP_ROWS)


def load_runs(traces_dir) -> dict[str, dict]:
    """The run parameters of a consolidated study, read from the footer only (no data)."""
    path = Path(traces_dir) / "candidates.parquet"
    try:
        schema = pq.read_schema(path)
    except FileNotFoundError:
        raise TraceError(f"{path}: no such file") from None
    except (pa.ArrowException, OSError) as err:
        raise TraceError(f"{path}: not a readable parquet file (truncated or corrupt): {err}") from None
    return run_metadata(schema).get("runs", {})


def load_traces(traces_dir) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict]]:
    """(candidates, tensor_reads, {run: parameters}) of a consolidated study, as the analyses take them.
    arch_seq cells are int16 numpy arrays; evotrace.analysis.common.arch_matrix stacks them. The reads'
    run and tensor_id are categoricals: a simulated search of 10^6 candidates reads 7*10^7 tensors."""
    traces_dir = Path(traces_dir)
    cand = read_candidates(traces_dir / "candidates.parquet")
    reads = read_frame(traces_dir / "tensor_reads.parquet", TENSOR_READS, dictionary=("run", "tensor_id"))
    return cand.to_pandas(), reads, run_metadata(cand.schema).get("runs", {})


def _main(args) -> int:
    try:
        cand, reads = consolidate(args.inputs, args.tensor_reads, args.out_dir)
    except TraceError as err:
        print(f"evotrace consolidate: error: {err}", file=sys.stderr)
        return 1
    runs = load_runs(args.out_dir)
    print(f"consolidated {len(runs)} run(s) -> {cand}, {reads}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("consolidate", help="check and merge per-run traces into one study trace")
    p.add_argument("--inputs", nargs="+", required=True, help="per-run candidates.parquet files")
    p.add_argument("--tensor-reads", nargs="*", default=[], help="per-run tensor_reads.parquet files, in the order of --inputs")
    p.add_argument("--out-dir", required=True, help="results/<study>/traces")
    p.set_defaults(func=_main)
