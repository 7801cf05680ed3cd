"""The simulated evaluator drives the real master: Algorithm 1 at any W, the same traces as a real run,
and master-side memory per job that does not depend on N."""

import gc
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from evotrace.cli import main
from evotrace.search.driver import ReadLog, TraceBook, run_master
from evotrace.search.journal import JournalError
from evotrace.search.evaluators import SimulatedEvaluator
from evotrace.search.invariants import algorithm1_violations
from evotrace.search.models import Layouts, ModelError, make_model
from evotrace.search.regevo import RegularizedEvolution
from evotrace.search.simulated import SimulatedWorkers, run_simulated, simulation_spec
from evotrace.spaces import make_space
from evotrace.trace import READ_COLUMNS, check_packed, pack_reads

NB201 = {"C": 4, "N": 1, "input_shape": [1, 8, 8]}


def spec_for(n, p, s, w, seed=3, transfer=True, **kw):
    return simulation_spec("nb201", NB201, n, p, s, w, seed, transfer=transfer, **kw)


@pytest.mark.parametrize("workers,n", [(1, 200), (8, 400), (39, 800), (1000, 1500)])
def test_simulated_traces_follow_algorithm1(tmp_path, workers, n):
    spec = spec_for(n, 50, 5, workers)
    assert run_simulated(spec, tmp_path) == 0
    trace = pd.read_parquet(tmp_path / "candidates.parquet")
    assert algorithm1_violations(trace, 50, 5, n) == []
    assert trace["worker"].nunique() == min(workers, n)
    meta = json.loads(pq.read_schema(tmp_path / "candidates.parquet").metadata[b"evotrace"])
    assert meta["evaluation"]["kind"] == "simulated" and meta["evaluation"]["model"] == "synthetic"
    assert meta["evaluation"]["parameters"]["model"] == "synthetic" and meta["workers"] == workers
    # at most W candidates run at any virtual time
    events = np.concatenate([np.c_[trace["start_time"], np.ones(n)], np.c_[trace["end_time"], -np.ones(n)]])
    events = events[np.lexsort((events[:, 1], events[:, 0]))]
    assert np.cumsum(events[:, 1]).max() <= workers


def test_one_worker_equals_sequential_algorithm1(tmp_path):
    """W=1: each result is back before the next candidate is created, so the master must produce
    exactly what a plain loop over Algorithm 1 produces with the same seed and quality model."""
    n, p, s, seed = 400, 30, 4, 11
    spec = spec_for(n, p, s, 1, seed=seed)
    assert run_simulated(spec, tmp_path) == 0
    trace = pd.read_parquet(tmp_path / "candidates.parquet").sort_values("job_id")

    space = make_space("nb201", **spec["space_options"])
    model = make_model("synthetic", space, seed)
    core = RegularizedEvolution(spec["num_choices"], p, s, n, np.random.default_rng(seed))
    rows = []
    while not core.done_creating:
        c = core.create()
        quality, _ = model.outcome(c.job_id, c.arch_seq, None)
        core.complete(c.job_id, c.arch_seq, quality)
        rows.append((c.job_id, list(c.arch_seq), c.parent_id, c.mutation_pos, quality))
    assert [list(a) for a in trace["arch_seq"]] == [r[1] for r in rows]
    assert trace["parent_id"].astype("Int64").tolist() == [pd.NA if r[2] is None else r[2] for r in rows]
    assert trace["quality"].tolist() == [r[4] for r in rows]
    assert trace["population_version"].tolist() == list(range(n))


def test_a_candidates_outcome_depends_on_the_seed_and_its_job_id_only():
    """A resumed search re-runs its unfinished candidates out of order: each must get the same outcome."""
    space = make_space("nb201", **NB201)
    rng = np.random.default_rng(0)
    seqs = [space.sample(rng) for _ in range(50)]
    jobs = [0, 1, 4095, 4096, 9000, 123456]
    alone = {j: make_model("synthetic", space, 7).outcome(j, seqs[j % 50], 2) for j in jobs}
    model = make_model("synthetic", space, 7)
    for j in range(12000, 0, -7):  # many others first, in another order
        model.outcome(j, seqs[j % 50], None)
    assert {j: model.outcome(j, seqs[j % 50], 2) for j in reversed(jobs)} == alone
    other_seed = make_model("synthetic", space, 8)
    assert [other_seed.outcome(j, seqs[j % 50], 2) for j in jobs] != [alone[j] for j in jobs]
    assert len({alone[j][1] / model.layouts(seqs[j % 50])[3] for j in jobs}) == len(jobs)  # noise differs by job


def test_tensor_reads_name_the_real_tensors(tmp_path):
    spec = spec_for(400, 30, 4, 8)
    run_simulated(spec, tmp_path)
    trace = pd.read_parquet(tmp_path / "candidates.parquet").set_index("job_id")
    reads = pd.read_parquet(tmp_path / "tensor_reads.parquet")
    assert len(reads) > 0
    space = make_space("nb201", **spec["space_options"])
    for job_id, group in list(reads.groupby("job_id"))[:40]:
        row = trace.loc[job_id]
        state = space.build(row["arch_seq"].tolist()).state_dict()
        positions = space.tensor_positions(row["arch_seq"].tolist())
        names = [t.split("/", 1)[1] for t in group["tensor_id"]]
        expected = [n for n in state if all(q < row["prefix_len"] for q in positions[n])]
        assert names == expected
        assert group["nbytes"].tolist() == [state[n].nbytes for n in names]
        # a tensor keeps its identity along the lineage: the donor holds the same id
        assert (group["owner_id"] <= row["donor_id"]).all()
        assert row["n_transferred_tensors"] == len(group)
        assert row["bytes_read"] == group.loc[~group["cache_hit"], "nbytes"].sum()


def _journaled_reads(path) -> dict[int, dict[str, list]]:
    """The reads of each job in a journal, as columns of lists, whatever form the journal keeps them in."""
    log = ReadLog()
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record["e"] == "d":
            log[record["job_id"]] = record["tensor_reads"]
    out = {}
    for job_id in log:
        cols = log.columns([job_id])
        out[job_id] = {c: list(cols[c]) if c == "tensor_id" else cols[c].tolist() for c in READ_COLUMNS}
    return out


def test_journal_keeps_each_candidates_reads_as_the_columns_of_its_trace_rows(tmp_path):
    """A worker reports its tensor reads as columns (one list per READ_COLUMNS); the journal keeps them packed,
    a few strings per candidate (the ids joined, each other column as base64 bytes), so the master encodes a
    few values per candidate, whatever its reads. Unpacked, they are the candidate's trace rows."""
    n = 300
    assert run_simulated(spec_for(n, 30, 4, 8), tmp_path) == 0
    reads = pd.read_parquet(tmp_path / "tensor_reads.parquet")
    records = [json.loads(line) for line in (tmp_path / "journal.done.jsonl").read_text().splitlines()]
    packed = [r["tensor_reads"] for r in records if r["e"] == "d"]
    assert len(packed) == n and len(reads) > n
    assert all(isinstance(value, (str, int)) for form in packed for value in form.values())
    rows = {job_id: {c: group[c].tolist() for c in READ_COLUMNS} for job_id, group in reads.groupby("job_id")}
    assert _journaled_reads(tmp_path / "journal.done.jsonl") == {
        j: rows.get(j, {c: [] for c in READ_COLUMNS}) for j in range(n)}


def test_a_tensor_id_with_a_newline_is_journaled_as_columns_and_read_back():
    log = ReadLog()
    reads = {"tensor_id": ["3/a\nb", "3/c"], "owner_id": [3, 3], "position": [0, 1], "nbytes": [8, 16],
             "cache_hit": [False, True]}
    log[7] = reads
    form = log.journal_form(7)
    assert form["tensor_id"] == reads["tensor_id"] and form["n"] == 2
    again = ReadLog()
    again[7] = json.loads(json.dumps(form))
    assert again.tensor_ids(7) == ["3/a\nb", "3/c"]
    cols = again.columns([7])
    assert {c: list(cols[c]) if c == "tensor_id" else cols[c].tolist() for c in READ_COLUMNS} == reads
    assert ReadLog().journal_form(9)["n"] == 0  # a job without reads


@pytest.mark.parametrize("column", ["tensor_id", "owner_id", "position", "nbytes", "cache_hit"])
def test_a_report_whose_columns_disagree_on_the_number_of_reads_is_refused_naming_the_column(column):
    """The master checks a packed report from the lengths of its strings (no decoding) when it arrives."""
    reads = {"tensor_id": ["3/a", "3/b", "4/c"], "owner_id": [3, 3, 4], "position": [0, 1, 2], "nbytes": [8, 16, 4],
             "cache_hit": [False, True, False]}
    packed = pack_reads(reads)
    assert check_packed(packed) == 3
    if column != "tensor_id":
        with pytest.raises(ValueError, match=f"column {column} has 2 values for 3"):
            pack_reads({**reads, column: reads[column][:2]})
    short = {**packed, column: pack_reads({c: v[:2] for c, v in reads.items()})[column]}
    with pytest.raises(ValueError, match=column):
        ReadLog()[1] = short


def test_resume_rebuilds_the_trace_from_a_journal_of_any_read_form(tmp_path):
    """A finished search's journal, resumed, writes the same trace; so do journals whose reads are columns of
    lists or rows (a dict per read), as earlier evotrace versions wrote them, so an older search still resumes."""
    spec = spec_for(300, 30, 4, 8)
    assert run_simulated(spec, tmp_path / "a") == 0
    lines = (tmp_path / "a" / "journal.done.jsonl").read_text().splitlines()
    reads = _journaled_reads(tmp_path / "a" / "journal.done.jsonl")
    expected = {name: pd.read_parquet(tmp_path / "a" / f"{name}.parquet") for name in ("candidates", "tensor_reads")}

    def as_columns(record):
        if record["e"] == "d":
            record["tensor_reads"] = reads[record["job_id"]]
        return record

    def as_rows(record):
        if record["e"] == "d":
            columns = reads[record["job_id"]]
            record["tensor_reads"] = [dict(zip(columns, row)) for row in zip(*columns.values())]
        return record

    for form, convert in (("packed", lambda r: r), ("columns", as_columns), ("rows", as_rows)):
        out = tmp_path / form
        out.mkdir()
        records = [convert(json.loads(line)) for line in lines]
        (out / "journal.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        assert run_simulated(spec, out) == 0
        for name, table in expected.items():
            pd.testing.assert_frame_equal(pd.read_parquet(out / f"{name}.parquet"), table, obj=f"{form}: {name}")


@pytest.mark.parametrize("damage", ["cut short", "not base64"])
def test_a_journal_with_damaged_packed_reads_names_the_job(tmp_path, damage):
    spec = spec_for(100, 20, 4, 4)
    assert run_simulated(spec, tmp_path / "a") == 0
    records = [json.loads(line) for line in (tmp_path / "a" / "journal.done.jsonl").read_text().splitlines()]
    victim = next(r for r in records if r["e"] == "d" and r["tensor_reads"]["n"] > 1)
    nbytes = victim["tensor_reads"]["nbytes"]
    victim["tensor_reads"]["nbytes"] = nbytes[:-8] if damage == "cut short" else "!" + nbytes[1:]
    out = tmp_path / "b"
    out.mkdir()
    (out / "journal.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(JournalError, match=f"tensor reads of job {victim['job_id']} cannot be read"):
        run_simulated(spec, out)


def _retained(tmp_path, n, workers=32):
    """Bytes allocated by the master, the evaluator and DeepHyper and still held when the last result is
    gathered, and what the evaluator and trace book hold then. Left out: what the simulated workers
    allocate (their reports, held only as long as the book holds the job's row, which is counted; their
    bounded caches), the popularity window (bounded by its window), and the reads of the rows the book
    holds (their number is bounded, checked apart; their size is not a matter of N): reads per candidate
    grow as the search converges, so these fill over the run whatever N is."""
    spec = spec_for(n, 50, 5, workers)
    spec["transfer"]["cache"].update(policy="popularity", min_donations=2, capacity_mb=0.01)
    held = {}

    class Probe(SimulatedEvaluator):
        def gather(self, type, size=1):
            done = super().gather(type, size)
            master = self.results.master
            if self.num_jobs_gathered == n // 2:  # rows held: those not written yet, since the oldest running
                oldest = min(int(job.args["job_id"]) for *_, job in self._running)
                held.update(book_rows=len(master.book.created), book_reads=len(master.book.reads),
                            behind=master.core.created - oldest)
            if self.num_jobs_gathered == n:
                gc.collect()  # what is retained is what is reachable, not garbage awaiting a collection
                held.update(self.held(), reads_bytes=master.book.reads.held_bytes(),
                            snapshot=tracemalloc.take_snapshot())
            return done

    tracemalloc.start(4)  # deep enough to tell the popularity window's Counter (collections) by its caller
    try:
        evaluator = Probe(SimulatedWorkers(spec), num_workers=workers)
        gc.collect()
        base = tracemalloc.take_snapshot()
        assert run_master(evaluator, spec, tmp_path / str(n), workers) == 0
    finally:
        tracemalloc.stop()
    bounded = [tracemalloc.Filter(False, f"*/evotrace/{name}.py", all_frames=True)
               for name in ("search/models", "search/simulated", "cache")]
    grown = held.pop("snapshot").filter_traces(bounded).compare_to(base.filter_traces(bounded), "filename")
    return sum(stat.size_diff for stat in grown) - held["reads_bytes"], held


def test_retained_memory_per_job_does_not_grow_with_n(tmp_path, monkeypatch):
    """What Algorithm 1 needs stays (population, running jobs, the donor index, the simulated
    repository's owner maps); trace rows leave for the Parquet files in batches. Stock DeepHyper kept
    every job's arguments, metadata and Job object, and the trace book every row until the end
    (about 16 KB per job)."""
    monkeypatch.setattr(TraceBook, "batch", 64)
    small, _ = _retained(tmp_path, 300)
    large, held = _retained(tmp_path, 900)
    assert held["storage_jobs"] <= 32 and held["jobs"] <= 32 and held["submitted_ids"] <= 32
    assert held["history_jobs"] <= 32
    assert held["book_rows"] <= 64 + 32 + held["behind"] and held["book_reads"] <= held["book_rows"]
    assert held["behind"] < 300, held
    per_job = (large - small) / 600
    assert per_job < 1024, (small, large, per_job)  # bytes per extra job: donor index and owner maps


def test_simulate_command_writes_a_trace_like_a_real_run(tmp_path):
    out = tmp_path / "sim"
    code = main(["simulate", "--space", "attn", "--space-option", "input_blocks=[6,4]",
                 "--space-option", "widths=[4,12,4]", "--candidates", "300", "--population", "30", "--sample", "4",
                 "--workers", "16", "--seed", "2", "--quanta", "2", "--out", str(out)])
    assert code == 0
    trace = pd.read_parquet(out / "candidates.parquet")
    assert algorithm1_violations(trace, 30, 4, 300) == []
    meta = json.loads(pq.read_schema(out / "candidates.parquet").metadata[b"evotrace"])
    assert (meta["space"], meta["candidates"], meta["workers"], meta["quanta"]) == ("attn", 300, 16, 2)
    assert pd.read_parquet(out / "tensor_reads.parquet")["tensor_id"].str.contains("/blocks.").any()


def test_no_transfer_and_bad_input(tmp_path, capsys):
    out = tmp_path / "nt"
    assert main(["simulate", "--space", "nb201", "--space-option", "C=4", "--candidates", "100", "--population", "20",
                 "--sample", "3", "--workers", "4", "--seed", "1", "--no-transfer", "--out", str(out)]) == 0
    assert len(pd.read_parquet(out / "tensor_reads.parquet")) == 0
    assert pd.read_parquet(out / "candidates.parquet")["donor_id"].isna().all()
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        main(["simulate", "--space", "nb201", "--space-option", "C", "--candidates", "100", "--population", "20",
              "--sample", "3", "--workers", "4", "--seed", "1", "--out", str(out)])
    with pytest.raises(SystemExit, match="sample < population < candidates"):
        main(["simulate", "--space", "nb201", "--candidates", "10", "--population", "20",
              "--sample", "3", "--workers", "4", "--seed", "1", "--out", str(out)])
    with pytest.raises(SystemExit, match=r"evaluation\.model: 'gaussian' does not match"):
        main(["simulate", "--space", "nb201", "--candidates", "100", "--population", "20", "--sample", "3",
              "--workers", "4", "--seed", "1", "--model", "gaussian", "--out", str(out)])


def test_fitted_model_learns_from_a_trace(tmp_path):
    """A model fitted on a synthetic trace recovers its ordering of choices and its time scale."""
    spec = spec_for(1500, 50, 5, 16, seed=4)
    run_simulated(spec, tmp_path / "src")
    space = make_space("nb201", **spec["space_options"])
    layouts = Layouts(space)
    truth = make_model("synthetic", space, 4, layouts)
    fitted = make_model(f"fitted:{tmp_path / 'src' / 'candidates.parquet'}", space, 4, layouts)
    rng = np.random.default_rng(0)
    seqs = [space.sample(rng) for _ in range(200)]
    true_q = [truth.outcome(i, s, None)[0] for i, s in enumerate(seqs)]
    fit_q = [fitted.outcome(i, s, None)[0] for i, s in enumerate(seqs)]
    assert np.corrcoef(true_q, fit_q)[0, 1] > 0.7
    true_t = np.median([truth.outcome(i, s, None)[1] for i, s in enumerate(seqs)])
    fit_t = np.median([fitted.outcome(i, s, None)[1] for i, s in enumerate(seqs)])
    assert 0.7 < fit_t / true_t < 1.4
    other = make_space("attn", input_blocks=[6, 4], widths=[4, 12, 4])
    with pytest.raises(ModelError, match="simulated space"):
        make_model(f"fitted:{tmp_path / 'src' / 'candidates.parquet'}", other, 4)
    with pytest.raises(ModelError, match="no such file"):
        make_model(f"fitted:{tmp_path / 'missing.parquet'}", space, 4)


def test_a_resumed_simulated_search_keeps_the_models_stored_before_the_interruption(tmp_path):
    """A journal cut where a killed master would leave it: the resumed search finds every model stored
    before the cut as a donor, as the real repository on disk would provide it (no 'donor is not stored'
    fallback), and its transfers read tensors owned by the lineage of their donor."""
    spec = spec_for(400, 30, 4, 8)
    assert run_simulated(spec, tmp_path / "full") == 0
    lines = (tmp_path / "full" / "journal.done.jsonl").read_text().splitlines(keepends=True)
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "journal.jsonl").write_text("".join(lines[: len(lines) * 3 // 5]))
    before = {json.loads(line)["job_id"] for line in lines[: len(lines) * 3 // 5]
              if json.loads(line)["e"] == "d" and json.loads(line)["stored"]}
    assert run_simulated(spec, cut) == 0
    trace = pd.read_parquet(cut / "candidates.parquet")
    assert algorithm1_violations(trace, 30, 4, 400) == []
    assert not trace["warning"].fillna("").str.contains("not stored").any()
    resumed = trace[~trace["job_id"].isin(before) & trace["donor_id"].isin(before)]
    assert len(resumed) > 20  # candidates after the cut that inherited from models stored before it
    reads = pd.read_parquet(cut / "tensor_reads.parquet")
    mine = reads[reads["job_id"].isin(resumed["job_id"])].merge(resumed[["job_id", "donor_id"]], on="job_id")
    assert len(mine) and (mine["owner_id"] <= mine["donor_id"]).all()


def test_every_table_reads_categorical_tensor_ids_as_it_reads_strings(tmp_path):
    """load_traces gives the reads' run and tensor_id as categories (a 10^6 simulated search reads 7*10^7
    tensors); every analysis table must answer as it does on plain strings."""
    from evotrace.analysis import RQS
    from evotrace.analysis.command import rq_module
    from evotrace.config import defaults
    from evotrace.consolidate import consolidate, load_traces

    assert run_simulated(spec_for(600, 50, 5, 8), tmp_path / "run") == 0
    consolidate([tmp_path / "run" / "candidates.parquet"], [tmp_path / "run" / "tensor_reads.parquet"], tmp_path / "traces")
    candidates, reads, runs = load_traces(tmp_path / "traces")
    assert isinstance(reads["tensor_id"].dtype, pd.CategoricalDtype) and reads["tensor_id"].nunique() > 100
    strings = reads.astype({"run": str, "tensor_id": str})
    study = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "config.yaml").read_text())
    params = {"analysis": {**defaults("analysis"), **study["analysis"]}, "runs": runs}
    plain = lambda df: df.astype({c: object for c in df.columns if isinstance(df[c].dtype, pd.CategoricalDtype)})  # noqa: E731
    compared = 0
    for rq in RQS:
        for name, table in rq_module(rq).TABLES.items():
            expected = table(candidates, strings, params)
            pd.testing.assert_frame_equal(plain(table(candidates, reads, params)), plain(expected), check_dtype=False,
                                          obj=f"{rq}.{name}")
            compared += bool(len(expected))
    assert compared >= 25

