"""Consolidation of per-run traces: good traces merge, every kind of broken trace is refused by name."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evotrace import consolidate as consolidate_module
from evotrace.cli import main
from evotrace.consolidate import TraceError, consolidate, load_runs, load_traces
from evotrace.trace import CANDIDATES, TENSOR_READS, read_candidates, run_metadata, with_run_metadata


def candidates_table(run="a", n=6, seqs=None, transfer=True, params=None):
    seqs = seqs or [[i % 3, (i // 3) % 3, 1] for i in range(n)]
    stage2 = [i >= 3 for i in range(n)]
    rows = {
        "run": [run] * n,
        "job_id": list(range(n)),
        "worker": [1 + i % 2 for i in range(n)],
        "host": ["h0"] * n,
        "pid": [100] * n,
        "submit_time": [float(i) for i in range(n)],
        "start_time": [i + 0.1 for i in range(n)],
        "end_time": [i + 2.0 for i in range(n)],
        "stage": [2 if s else 1 for s in stage2],
        "arch_seq": seqs,
        "parent_id": [i - 3 if s else None for i, s in enumerate(stage2)],
        "mutation_pos": [1 if s else None for s in stage2],
        "quality": [0.5 + 0.05 * i for i in range(n)],
        "status": ["ok"] * n,
        "error": [None] * n,
        "warning": [None] * n,
        "epochs": [1] * n,
        "train_seconds": [1.9] * n,
        "insert_seq": list(range(n)),
        "population_version": [max(0, i - 1) for i in range(n)],
        "donor_id": [i - 3 if s and transfer else None for i, s in enumerate(stage2)],
        "prefix_len": [1 if s and transfer else 0 for s in stage2],
        "n_transferred_tensors": [2 if s and transfer else 0 for s in stage2],
        "bytes_read": [100 if s and transfer else 0 for s in stage2],
        "bytes_written": [300] * n,
        "stored": [True] * n,
        "transfer_seconds": [0.01] * n,
        "cache_hits": [0] * n,
    }
    meta = {"population": 3, "sample": 2, "candidates": n, "workers": 2, "transfer": transfer, "space": "nb201"}
    meta.update(params or {})
    return pa.table(rows, schema=with_run_metadata(CANDIDATES, meta))


def reads_table(run="a", jobs=(3, 4, 5)):
    k = len(jobs) * 2
    rows = {
        "run": [run] * k,
        "job_id": [j for j in jobs for _ in range(2)],
        "worker": [1] * k,
        "start_time": [float(j) for j in jobs for _ in range(2)],
        "tensor_id": [f"{j - 3}:{t}" for j in jobs for t in range(2)],
        "owner_id": [j - 3 for j in jobs for _ in range(2)],
        "position": [0] * k,
        "nbytes": [50] * k,
        "cache_hit": [False, True] * len(jobs),
    }
    return pa.table(rows, schema=TENSOR_READS)


def write(table, path):
    pq.write_table(table, path)
    return path


@pytest.fixture
def two_runs(tmp_path):
    paths = []
    for run, transfer in (("a", True), ("b", False)):
        d = tmp_path / run
        d.mkdir()
        c = write(candidates_table(run, transfer=transfer, params={"seed": 1 if run == "a" else 2}), d / "candidates.parquet")
        r = write(reads_table(run) if transfer else TENSOR_READS.empty_table(), d / "tensor_reads.parquet")
        paths.append((c, r))
    return paths


def test_good_traces_merge(tmp_path, two_runs):
    out = tmp_path / "traces"
    consolidate([c for c, _ in two_runs], [r for _, r in two_runs], out)
    cand, reads, runs = load_traces(out)
    assert len(cand) == 12 and sorted(cand["run"].unique()) == ["a", "b"]
    assert len(reads) == 6 and set(reads["run"]) == {"a"}
    assert runs["a"]["seed"] == 1 and runs["b"]["transfer"] is False
    assert load_runs(out) == runs
    assert list(cand["arch_seq"].iloc[4]) == [1, 1, 1]
    schema = pq.read_schema(out / "candidates.parquet")
    assert schema.remove_metadata().equals(CANDIDATES) and run_metadata(schema) == {"runs": runs}
    # a consolidated trace is itself a valid input, and its runs keep their parameters
    consolidate([out / "candidates.parquet"], [out / "tensor_reads.parquet"], tmp_path / "again")
    assert load_runs(tmp_path / "again") == runs


def broken(tmp_path, name, table):
    return write(table, tmp_path / name)


@pytest.mark.parametrize(
    "make, problem",
    [
        (lambda: candidates_table().drop_columns(["quality"]), "missing column(s) quality"),
        (lambda: candidates_table().set_column(1, "job_id", pa.array([str(i) for i in range(6)])), "column job_id has type string, expected int64"),
        (lambda: candidates_table().append_column("extra", pa.array(range(6))), "unexpected column(s) extra"),
        (lambda: CANDIDATES.empty_table(), "empty trace"),
        (lambda: candidates_table().filter(pa.array([True] * 5 + [False])), "5 candidates, but the run metadata says 6"),
        (lambda: candidates_table().set_column(1, "job_id", pa.array([0, 1, 2, 3, 4, 4])), "job_id is not unique"),
        (lambda: candidates_table(params={"candidates": None}).set_column(1, "job_id", pa.array([0, 1, 2, 3, 4, 9])), "job_id must be 0..5"),
        (lambda: candidates_table().set_column(13, "status", pa.array(["ok"] * 5 + ["maybe"])), "status must be"),
    ],
)
def test_malformed_candidates_are_named(tmp_path, make, problem):
    path = broken(tmp_path, "bad.parquet", make())
    with pytest.raises(TraceError) as err:
        consolidate([path], [], tmp_path / "out")
    assert str(path) in str(err.value) and problem in str(err.value)
    assert not (tmp_path / "out" / "candidates.parquet").exists()


def test_null_in_required_column(tmp_path):
    table = candidates_table()
    schema = pa.schema([f.with_nullable(True) for f in CANDIDATES])
    table = table.cast(schema).set_column(0, pa.field("run", pa.string()), pa.array(["a"] * 5 + [None]))
    path = broken(tmp_path, "nulls.parquet", table)
    with pytest.raises(TraceError, match="column run has 1 null"):
        read_candidates(path)


def test_truncated_and_empty_files(tmp_path):
    good = write(candidates_table(), tmp_path / "good.parquet")
    data = good.read_bytes()
    truncated = tmp_path / "truncated.parquet"
    truncated.write_bytes(data[: len(data) // 2])
    empty = tmp_path / "empty.parquet"
    empty.write_bytes(b"")
    with pytest.raises(TraceError, match=r"truncated\.parquet: not a readable parquet file \(truncated or corrupt\)"):
        consolidate([good, truncated], [], tmp_path / "out")
    with pytest.raises(TraceError, match=r"empty\.parquet: empty file \(0 bytes\)"):
        consolidate([empty], [], tmp_path / "out")
    with pytest.raises(TraceError, match="missing.parquet: no such file"):
        consolidate([tmp_path / "missing.parquet"], [], tmp_path / "out")


def test_duplicate_runs_across_inputs(tmp_path):
    a1 = write(candidates_table("a"), tmp_path / "a1.parquet")
    a2 = write(candidates_table("a"), tmp_path / "a2.parquet")
    with pytest.raises(TraceError, match=r"a2\.parquet: run a also appears in .*a1\.parquet"):
        consolidate([a1, a2], [], tmp_path / "out")


def test_tensor_reads_checked_against_their_run(tmp_path):
    c = write(candidates_table("a"), tmp_path / "c.parquet")
    empty = write(TENSOR_READS.empty_table(), tmp_path / "r_empty.parquet")
    with pytest.raises(TraceError, match=r"r_empty\.parquet: empty trace, but .* reports 6 transferred tensors"):
        consolidate([c], [empty], tmp_path / "out")
    other = write(reads_table("z"), tmp_path / "r_other.parquet")
    with pytest.raises(TraceError, match=r"r_other\.parquet: tensor reads of run\(s\) z absent"):
        consolidate([c], [other], tmp_path / "out")
    outside = write(reads_table("a", jobs=(3, 40)), tmp_path / "r_outside.parquet")
    with pytest.raises(TraceError, match=r"r_outside\.parquet: 2 tensor read\(s\) name a job_id outside 0\.\.5"):
        consolidate([c], [outside], tmp_path / "out")
    wrong = write(reads_table("a").drop_columns(["cache_hit"]), tmp_path / "r_wrong.parquet")
    with pytest.raises(TraceError, match=r"r_wrong\.parquet: missing column\(s\) cache_hit"):
        consolidate([c], [wrong], tmp_path / "out")
    with pytest.raises(TraceError, match="1 candidates traces but 2 tensor-reads"):
        consolidate([c], [wrong, wrong], tmp_path / "out")


def test_tensor_reads_pass_through_in_batches_and_a_bad_one_late_writes_nothing(tmp_path, two_runs, monkeypatch):
    """Reads are checked and copied a batch at a time: the result equals the whole tables, and a read
    outside its run in the last batch stops the consolidation with nothing new in place."""
    out = tmp_path / "whole"
    consolidate([c for c, _ in two_runs], [r for _, r in two_runs], out)
    monkeypatch.setattr(consolidate_module, "ROW_GROUP_ROWS", 2)
    batched = tmp_path / "batched"
    consolidate([c for c, _ in two_runs], [r for _, r in two_runs], batched)
    assert pq.ParquetFile(batched / "tensor_reads.parquet").metadata.num_row_groups > 1
    for name in ("candidates.parquet", "tensor_reads.parquet"):
        assert pq.read_table(batched / name).equals(pq.read_table(out / name))
    _, reads, _ = load_traces(batched)  # the ids as categories: codes, not tens of millions of strings
    assert isinstance(reads["tensor_id"].dtype, pd.CategoricalDtype) and isinstance(reads["run"].dtype, pd.CategoricalDtype)
    assert reads["tensor_id"].astype(str).tolist() == pq.read_table(out / "tensor_reads.parquet")["tensor_id"].to_pylist()
    c = write(candidates_table("a"), tmp_path / "c.parquet")
    late = write(reads_table("a", jobs=(0, 1, 2, 3, 4, 40)), tmp_path / "r_late.parquet")
    with pytest.raises(TraceError, match=r"r_late\.parquet: 2 tensor read\(s\) name a job_id outside 0\.\.5"):
        consolidate([c], [late], tmp_path / "late")
    assert not list((tmp_path / "late").glob("*"))


def test_cli(tmp_path, two_runs, capsys):
    out = tmp_path / "traces"
    argv = ["consolidate", "--inputs", *map(str, (c for c, _ in two_runs)), "--tensor-reads", *map(str, (r for _, r in two_runs)), "--out-dir", str(out)]
    assert main(argv) == 0
    assert "consolidated 2 run(s)" in capsys.readouterr().out
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 not really")
    assert main(["consolidate", "--inputs", str(bad), "--out-dir", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("evotrace consolidate: error: ") and str(bad) in err
