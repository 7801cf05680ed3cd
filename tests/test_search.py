"""Algorithm 1 on real MPI ranks with real training, checked on the written trace."""

import json
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

from evotrace.data import prepare, save
from evotrace.durable import temp_path
from evotrace.runspec import build_spec, write_spec
from evotrace.search.driver import Master
from evotrace.search.invariants import algorithm1_violations
from evotrace.search.journal import Journal, JournalError, SearchLocked
from evotrace.search.regevo import RegularizedEvolution, StarvedPopulation, position_weights
from evotrace.trace import run_metadata

import pyarrow.parquet as pq

MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
EVOTRACE = [sys.executable, "-m", "evotrace.cli"]


@pytest.fixture(scope="module")
def tabular(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "bc.npz"
    save(prepare("sklearn-breast-cancer", input_blocks=2, seed=0), path)
    return path


def make_spec(tmp_path, data, *, n=40, p=10, s=3, workers=2, seed=5, transfer=False, **extra):
    config = {
        "study": "t", "datasets": {"bc": {"source": "sklearn-breast-cancer"}},
        "search": {"candidates": n, "population": p, "sample": s, "workers": workers, "torch_threads": 1},
        "training": {"batch_size": 64, "learning_rate": 0.05},
        "transfer": {"fine_tune_epochs": 0, "cache": {"policy": "lru", "capacity_mb": 4}},
        "runs": {"r": {"space": "attn", "space_options": {"widths": [8, 24, 8]}, "dataset": "bc", "epochs": 1,
                       "seed": seed, "transfer": transfer}},
        "analysis": {"snapshots": [n]},
    }
    from evotrace.data import load
    from evotrace.spaces import AttnSpace

    ds = load(data)
    spec = build_spec(config, "r", str(data), AttnSpace.dataset_options(ds))
    spec.update(extra)
    path = tmp_path / "run" / "spec.json"
    write_spec(spec, path)
    return path


def search_cmd(spec, workers, *extra):
    return [MPIEXEC, "-n", str(workers + 1), *EVOTRACE, "search", "--spec", str(spec), "--out-dir", str(spec.parent),
            *extra]


def run_search(spec, workers, *extra, timeout=240):
    proc = subprocess.run(search_cmd(spec, workers, *extra), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return pd.read_parquet(spec.parent / "candidates.parquet"), proc.stderr


# --- Algorithm 1 without MPI ------------------------------------------------------------------

def test_regevo_stage_sizes_and_mutations_without_mpi():
    rng = np.random.default_rng(0)
    core = RegularizedEvolution([3, 4, 5], population=6, sample=3, candidates=30, rng=rng)
    rows = []
    while not core.done_creating:
        c = core.create()
        quality = float(rng.random()) if c.job_id % 7 else None  # every 7th fails
        insert = core.complete(c.job_id, c.arch_seq, quality)
        rows.append({"job_id": c.job_id, "stage": c.stage, "arch_seq": list(c.arch_seq), "parent_id": c.parent_id,
                     "mutation_pos": c.mutation_pos, "population_version": c.population_version,
                     "quality": quality, "status": "ok" if quality is not None else "failed", "insert_seq": insert})
    trace = pd.DataFrame(rows)
    assert algorithm1_violations(trace, 6, 3, 30) == []
    stage1 = trace[trace["stage"] == 1]
    assert (stage1["status"] == "ok").sum() == 6 and (stage1["status"] == "failed").any()
    assert len(core.population) == 6


def test_invariant_checker_catches_violations():
    rng = np.random.default_rng(1)
    core = RegularizedEvolution([5] * 4, population=5, sample=2, candidates=15, rng=rng)
    rows = []
    while not core.done_creating:
        c = core.create()
        q = float(rng.random())
        rows.append({"job_id": c.job_id, "stage": c.stage, "arch_seq": list(c.arch_seq), "parent_id": c.parent_id,
                     "mutation_pos": c.mutation_pos, "population_version": c.population_version, "quality": q,
                     "status": "ok", "insert_seq": core.complete(c.job_id, c.arch_seq, q)})
    good = pd.DataFrame(rows)
    bad = good.copy()
    bad.at[10, "mutation_pos"] = (int(bad.at[10, "mutation_pos"]) + 1) % 4
    assert any("job 10" in v for v in algorithm1_violations(bad, 5, 2, 15))
    worst = good.copy()
    row = worst.index[worst["stage"] == 2][3]
    v = int(worst.at[row, "population_version"])
    members = good[good["insert_seq"].between(max(0, v - 5), v - 1)]
    worst.at[row, "parent_id"] = int(members.sort_values("quality").iloc[0]["job_id"])
    assert any("worst" in v for v in algorithm1_violations(worst, 5, 2, 15))


def test_mutation_changes_value_and_follows_position_weights():
    rng = np.random.default_rng(2)
    core = RegularizedEvolution([2] * 5, population=3, sample=2, candidates=3000, rng=rng, positions=[0, 0, 0, 1, 3])
    counts = np.zeros(5)
    for _ in range(3):
        c = core.create()
        core.complete(c.job_id, c.arch_seq, rng.random())
    for _ in range(2000):
        c = core.create()
        counts[c.mutation_pos] += 1
        core.complete(c.job_id, c.arch_seq, rng.random())
    assert counts[:3].sum() == 0
    assert 0.70 < counts[4] / counts.sum() < 0.80
    assert position_weights("linear", 4).tolist() == [0.1, 0.2, 0.3, 0.4]
    with pytest.raises(ValueError, match="4 non-negative"):
        position_weights([1, 2], 4)


def _asynchronous(core, workers, rng, fail=lambda job_id: False):
    """Drive `core` as the master does with W asynchronous workers (random durations); returns the
    population size each stage-2 child was drawn from, and the trace."""
    import heapq

    t, running, free, sizes, rows = 0.0, [], workers, [], []

    def fill():
        nonlocal free
        while free and core.can_create():
            c = core.create()
            free -= 1
            if c.stage == 2:
                sizes.append(len(core.population))
            rows.append({"job_id": c.job_id, "stage": c.stage, "arch_seq": list(c.arch_seq), "parent_id": c.parent_id,
                         "mutation_pos": c.mutation_pos, "population_version": c.population_version})
            heapq.heappush(running, (t + rng.lognormal(0, 0.5), c.job_id, c.arch_seq))

    fill()
    while running:
        t, job_id, seq = heapq.heappop(running)
        quality = None if fail(job_id) else float(rng.random())
        rows[job_id].update(quality=quality, status="ok" if quality is not None else "failed",
                            insert_seq=core.complete(job_id, seq, quality))
        free += 1
        fill()
    return np.array(sizes), pd.DataFrame(rows)


@pytest.mark.parametrize("workers", [8, 39, 1000])
def test_every_tournament_samples_a_full_population(workers):
    """Section IV: p members whenever stage 2 samples, whatever W (the paper's p=100, s=5)."""
    rng = np.random.default_rng(workers)
    core = RegularizedEvolution([5] * 6, 100, 5, 1000, np.random.default_rng(0))
    sizes, trace = _asynchronous(core, workers, rng, fail=lambda j: j % 11 == 3)
    assert len(sizes) > 0 and (sizes == 100).all()
    stage1 = trace[trace["stage"] == 1]
    assert (stage1["status"] == "ok").sum() == 100 and len(stage1) == 100 + (stage1["status"] == "failed").sum()
    assert algorithm1_violations(trace, 100, 5, 1000) == []


def test_random_stage_boundary_gives_free_workers_random_candidates():
    rng = np.random.default_rng(3)
    core = RegularizedEvolution([5] * 6, 20, 3, 200, np.random.default_rng(0), stage_boundary="random")
    sizes, trace = _asynchronous(core, 8, rng)
    stage1 = trace[trace["stage"] == 1]
    assert 20 < len(stage1) < 20 + 8 and (sizes == 20).all()
    assert algorithm1_violations(trace, 20, 3, 200, stage_boundary="random") == []
    assert any("exactly p=20" in v for v in algorithm1_violations(trace, 20, 3, 200))
    with pytest.raises(ValueError, match="stage_boundary"):
        RegularizedEvolution([5] * 6, 20, 3, 200, np.random.default_rng(0), stage_boundary="eager")


def test_stage2_waits_for_a_full_population_and_failures_are_replaced():
    core = RegularizedEvolution([3, 3], population=3, sample=2, candidates=10, rng=np.random.default_rng(0))
    first = [core.create() for _ in range(3)]
    assert not core.can_create()  # p stage-1 candidates running: a free worker waits
    with pytest.raises(StarvedPopulation, match="p=3"):
        core.create()
    core.complete(first[0].job_id, first[0].arch_seq, None)
    replacement = core.create()
    assert replacement.stage == 1 and not core.can_create()
    for c in first[1:]:
        core.complete(c.job_id, c.arch_seq, 0.5)
    assert not core.can_create()  # 2 of 3 members: still no tournament
    core.complete(replacement.job_id, replacement.arch_seq, 0.7)
    child = core.create()
    assert child.stage == 2 and child.population_version == 3


def test_invariant_checker_rejects_a_tournament_over_a_partial_population():
    rows = [{"job_id": j, "stage": 1, "arch_seq": [j, 0], "parent_id": None, "mutation_pos": None,
             "population_version": 0, "quality": 0.1 * j, "status": "ok", "insert_seq": j} for j in range(3)]
    rows.append({"job_id": 3, "stage": 2, "arch_seq": [1, 1], "parent_id": 1, "mutation_pos": 1,
                 "population_version": 2, "quality": 0.9, "status": "ok", "insert_seq": 3})
    problems = algorithm1_violations(pd.DataFrame(rows), 3, 2, 4)
    assert any("population of 2 < p=3" in v for v in problems)


# --- the master's journal, lock and restart, without MPI ----------------------------------------

def _master(spec_path, spec=None, workers=2) -> Master:
    return Master(spec or json.loads(spec_path.read_text()), spec_path.parent, workers)


def _stop(master: Master) -> None:
    """What a killed master leaves: its journal as written, its lock released."""
    master.journal.close()
    master.lock.release()


def _created(master: Master, k: int) -> None:
    for _ in range(k):
        master.create(master.core.create())
    master.flush()


def test_resume_refuses_a_changed_spec_and_names_the_keys(tmp_path, tabular):
    spec_path = make_spec(tmp_path, tabular, n=40, p=10, s=3, workers=2)
    m = _master(spec_path)
    _created(m, 4)
    _stop(m)
    changed = json.loads(spec_path.read_text())
    changed["search"]["population"], changed["seed"] = 12, 6
    with pytest.raises(JournalError) as err:
        _master(spec_path, changed)
    assert "search.population: 10 -> 12" in str(err.value) and "seed: 5 -> 6" in str(err.value)
    assert "2 changed key(s)" in str(err.value) and "start afresh" in str(err.value)
    more_workers = json.loads(spec_path.read_text())
    more_workers["search"]["workers"] = 5  # allowed: the search itself does not depend on W
    m = _master(spec_path, more_workers, workers=5)
    assert [r["job_id"] for r in m.retry] == [0, 1, 2, 3]
    _stop(m)


def test_journal_bad_line_in_the_middle_is_an_error_naming_it(tmp_path):
    path = tmp_path / "journal.jsonl"
    first = b'{"e":"c","job_id":0}\n'
    path.write_bytes(first + b'{"e":"d","job_id":0,"qual' + b'{"e":"c","job_id":1}\n' + b'{"e":"d","job_id":1}\n')
    with pytest.raises(JournalError, match=rf"line 2 \(byte offset {len(first)}\)"):
        Journal(path).read()
    path.write_bytes(first + b'{"e":"d","jo')  # a kill in the middle of the last append
    journal = Journal(path)
    assert journal.read() == [{"e": "c", "job_id": 0}]
    journal.open()
    journal.append([{"e": "c", "job_id": 1}])
    journal.close()
    assert [r["job_id"] for r in Journal(path).read()] == [0, 1]


def test_journal_short_write_fails_loudly_at_the_record_it_cut(tmp_path):
    """A file-size limit makes the kernel write part of a record, then refuse (as a full disk does)."""
    code = textwrap.dedent("""
        import resource, signal, sys
        from evotrace.search.journal import Journal, JournalError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        journal = Journal(sys.argv[1])
        journal.open()
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, resource.RLIM_INFINITY))
        for i in range(100):
            try:
                journal.append([{"e": "c", "job_id": i, "pad": "x" * 50}])
            except JournalError as err:
                print(i, err)
                sys.exit(3)
    """)
    path = tmp_path / "journal.jsonl"
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    cut = int(proc.stdout.split()[0])
    assert "failed" in proc.stdout and "rerun it to resume" in proc.stdout
    assert [r["job_id"] for r in Journal(path).read()] == list(range(cut))  # every whole record, none lost


def test_a_second_master_is_refused_while_the_first_holds_the_lock(tmp_path, tabular):
    spec_path = make_spec(tmp_path, tabular, n=40, p=10, s=3, workers=2)
    code = textwrap.dedent(f"""
        import json, pathlib, time
        from evotrace.search.driver import Master
        spec = pathlib.Path({str(spec_path)!r})
        master = Master(json.loads(spec.read_text()), spec.parent, 2)
        print("locked", flush=True)
        time.sleep(120)
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(SearchLocked) as err:
            _master(spec_path)
        assert f'"pid": {holder.pid}' in str(err.value) and socket.gethostname() in str(err.value)
        assert '"since"' in str(err.value)
    finally:
        holder.kill()
        holder.wait()
    _stop(_master(spec_path))  # a killed master's lock goes with it


def test_search_start_removes_leftover_temporary_files(tmp_path, tabular):
    spec_path = make_spec(tmp_path, tabular, n=40, p=10, s=3, workers=2, transfer=True)
    m = _master(spec_path)
    _created(m, 3)
    _stop(m)
    out = spec_path.parent
    leftovers = [temp_path(out / "candidates.parquet"), temp_path(out / "repository/tensors/3.safetensors"),
                 temp_path(out / "repository/models/3.json")]  # names of writes a kill interrupted
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half written")
    _stop(_master(spec_path))
    assert [p for p in leftovers if p.exists()] == []


def test_storage_error_keeps_the_quality_and_warns_once(tmp_path, tabular, caplog, monkeypatch):
    import evotrace.durable
    import torch
    from evotrace.repository import ModelRepository
    from evotrace.search.worker import _store

    monkeypatch.setattr(evotrace.durable, "_WARNED", set())
    spec = json.loads(make_spec(tmp_path, tabular, transfer=True).read_text())
    repo = ModelRepository(tmp_path / "repo")
    shutil.rmtree(repo.root / "tensors")
    (repo.root / "tensors").write_bytes(b"")  # every tensor write now fails with an OSError
    state = {"spec": spec, "repository": repo, "rank": 1}
    model = torch.nn.Linear(3, 2)
    metas = []
    for job_id in (11, 12):
        meta = {"stored": False, "warning": None, "bytes_written": 0}
        _store(state, model, (1, 2), 0.75, {"job_id": job_id}, {}, meta)
        metas.append(meta)
    assert all(not m["stored"] and m["warning"].startswith("not stored: NotADirectoryError") for m in metas)
    assert len([r for r in caplog.records if "cannot store models" in r.getMessage()]) == 1


# --- real MPI searches -------------------------------------------------------------------------

def test_a_worker_task_unpickles_without_deephyper(tmp_path):
    """The master ships each candidate as a worker_task: a fresh interpreter (a worker rank) unpickles it
    and reads the job's parameters without importing DeepHyper, whose import costs seconds per rank."""
    import pickle
    from types import SimpleNamespace

    from evotrace.search.evaluators import Arguments, worker_task
    from evotrace.search.worker import evaluate

    job = SimpleNamespace(run_function=evaluate, args=Arguments({"job_id": 7, "arch_seq": [1, 2]}))
    (tmp_path / "task.pkl").write_bytes(pickle.dumps(worker_task(job, {"spec_path": "s.json"})))
    probe = textwrap.dedent(f"""
        import pickle, sys
        task = pickle.loads(open({str(tmp_path / "task.pkl")!r}, "rb").read())
        print(task.func.__module__, task.args[0].parameters["job_id"], task.keywords["spec_path"],
              sorted(m for m in sys.modules if m.split(".")[0] in ("deephyper", "ConfigSpace", "sklearn")))
    """)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["evotrace.search.worker", "7", "s.json", "[]"]


@pytest.mark.mpi
def test_mpi_search_follows_algorithm1(tmp_path, tabular):
    spec = make_spec(tmp_path, tabular, n=40, p=10, s=3, workers=3)
    trace, log = run_search(spec, 3)
    assert algorithm1_violations(trace, 10, 3, 40) == []
    assert set(trace["worker"]) == {1, 2, 3}
    assert (trace["status"] == "ok").all() and trace["quality"].between(0, 1).all()
    assert (trace["epochs"] == 1).all() and (trace["train_seconds"] > 0).all()
    assert (trace["start_time"] >= trace["submit_time"] - 1e-3).all() and (trace["end_time"] > trace["start_time"]).all()
    meta = run_metadata(pq.read_schema(spec.parent / "candidates.parquet"))
    assert meta["candidates"] == 40 and meta["population"] == 10 and meta["workers"] == 3 and meta["seed"] == 5
    assert "40/40 done" in log and "candidates/min" in log and "best quality" in log
    assert (spec.parent / "journal.done.jsonl").exists() and not (spec.parent / "journal.jsonl").exists()


@pytest.mark.mpi
def test_eight_workers_wait_for_a_full_population_on_skewed_clocks(tmp_path, tabular):
    """W=8 > p=5: stage 2 starts only once p results are in (the idle workers show in the trace), failed
    stage-1 candidates are replaced, and worker clocks set 1000 s ahead / 250 s behind are corrected."""
    spec = make_spec(tmp_path, tabular, n=40, p=5, s=2, workers=8, evaluation={"kind": "sleep", "seconds": 0.05},
                     inject_failures={"rate": 0.2}, inject_clock_skew={"1": 1000.0, "3": -250.0})
    trace, _ = run_search(spec, 8)
    assert algorithm1_violations(trace, 5, 2, 40) == []
    stage1, stage2 = trace[trace["stage"] == 1], trace[trace["stage"] == 2]
    assert (stage1["status"] == "ok").sum() == 5 and (stage1["status"] == "failed").any()
    assert (stage2["population_version"] >= 5).all() and len(stage2) == 40 - len(stage1)
    full_at = stage1.loc[stage1["status"] == "ok", "end_time"].max()
    assert stage2["submit_time"].min() >= full_at - 0.01
    meta = run_metadata(pq.read_schema(spec.parent / "candidates.parquet"))
    assert meta["stage_boundary"] == "wait" and sorted(meta["clock_offsets"], key=int) == [str(r) for r in range(1, 9)]
    offsets = {int(r): v["offset_s"] for r, v in meta["clock_offsets"].items()}
    assert offsets[1] == pytest.approx(1000.0, abs=0.05) and offsets[3] == pytest.approx(-250.0, abs=0.05)
    assert all(abs(o) < 0.05 for r, o in offsets.items() if r not in (1, 3))
    assert {1, 3} <= set(trace["worker"])
    assert (trace["start_time"] >= trace["submit_time"] - 0.01).all()
    assert (trace["end_time"] >= trace["start_time"]).all() and (trace["end_time"] < 300).all()


@pytest.mark.mpi
def test_single_worker_killed_and_resumed_equals_the_uninterrupted_run(tmp_path, tabular):
    """Created candidates reach the journal before they run, with the generator state: a resumed W=1
    search re-submits the one that was running and continues the same random stream."""
    sleep = {"kind": "sleep", "seconds": 0.1}
    whole, _ = run_search(make_spec(tmp_path / "whole", tabular, n=30, p=5, s=2, workers=1, evaluation=sleep), 1)
    spec = make_spec(tmp_path / "killed", tabular, n=30, p=5, s=2, workers=1, evaluation=sleep)
    journal = spec.parent / "journal.jsonl"
    proc = subprocess.Popen(search_cmd(spec, 1), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (journal.exists() and journal.read_text().count('"e":"d"') >= 12):
        time.sleep(0.05)
    master = next(c for c in psutil.Process(proc.pid).children(recursive=True)
                  if c.environ().get("PMI_RANK") == "0" and "evotrace" in " ".join(c.cmdline()))
    master.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (spec.parent / "candidates.parquet").exists()
    resumed, log = run_search(spec, 1)
    assert "resuming" in log
    for column in ("stage", "arch_seq", "parent_id", "mutation_pos", "quality", "insert_seq"):
        assert resumed[column].astype(str).tolist() == whole[column].astype(str).tolist(), column


@pytest.mark.mpi
def test_failures_are_recorded_and_never_enter_the_population(tmp_path, tabular):
    spec = make_spec(tmp_path, tabular, n=40, p=10, s=3, workers=2, inject_failures={"rate": 0.1, "nan_jobs": [12]})
    trace, _ = run_search(spec, 2)
    failed = trace[trace["status"] == "failed"]
    assert len(trace) == 40 and 12 in set(failed["job_id"])
    assert len(failed) >= 3
    assert failed["quality"].isna().all() and failed["insert_seq"].isna().all()
    assert trace.loc[trace["status"] == "ok", "error"].isna().all()
    assert failed["error"].str.contains("injected failure|NonFiniteLoss").all()
    assert not set(failed["job_id"]) & set(trace["parent_id"].dropna().astype(int))
    assert algorithm1_violations(trace, 10, 3, 40) == []


@pytest.mark.mpi
def test_single_worker_search_is_reproducible(tmp_path, tabular):
    a, _ = run_search(make_spec(tmp_path / "a", tabular, n=25, p=8, s=3, workers=1), 1)
    b, _ = run_search(make_spec(tmp_path / "b", tabular, n=25, p=8, s=3, workers=1), 1)
    for column in ("arch_seq", "parent_id", "mutation_pos", "quality", "insert_seq"):
        assert a[column].astype(str).tolist() == b[column].astype(str).tolist(), column


@pytest.mark.mpi
def test_resume_after_sigkill_of_the_master(tmp_path, tabular):
    spec = make_spec(tmp_path, tabular, n=60, p=10, s=3, workers=2, evaluation={"kind": "sleep", "seconds": 0.15})
    journal = spec.parent / "journal.jsonl"
    proc = subprocess.Popen(search_cmd(spec, 2), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline:
        if journal.exists() and journal.read_text().count('"e":"d"') >= 25:
            break
        time.sleep(0.1)
    master = next(c for c in psutil.Process(proc.pid).children(recursive=True)
                  if c.environ().get("PMI_RANK") == "0" and "evotrace" in " ".join(c.cmdline()))
    master.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    before = {r["job_id"]: r for r in map(json.loads, journal.read_text().splitlines()) if r["e"] == "d"}
    assert 25 <= len(before) < 60 and not (spec.parent / "candidates.parquet").exists()

    trace, log = run_search(spec, 2)
    assert "resuming" in log
    assert len(trace) == 60 and trace["job_id"].tolist() == list(range(60))
    by_id = trace.set_index("job_id")
    for job_id, record in before.items():
        assert by_id.at[job_id, "quality"] == pytest.approx(record["quality"], nan_ok=True)
        assert by_id.at[job_id, "insert_seq"] == pytest.approx(record["insert_seq"], nan_ok=True)
    assert algorithm1_violations(trace, 10, 3, 60) == []


def _lcp(a, b):
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


@pytest.mark.mpi
def test_transfer_search_picks_longest_prefix_donors(tmp_path, tabular):
    spec = make_spec(tmp_path, tabular, n=40, p=10, s=3, workers=2, transfer=True)
    scratch = tmp_path / "scratch"
    trace, _ = run_search(spec, 2, "--cache-dir", str(scratch))
    assert algorithm1_violations(trace, 10, 3, 40) == []
    assert trace["cache_hits"].sum() > 0  # the workers' caches were used, and removed when the workers ended
    assert scratch.is_dir() and list(scratch.iterdir()) == []
    reads = pd.read_parquet(spec.parent / "tensor_reads.parquet")
    stored = trace[trace["stored"]]
    assert len(stored) == (trace["status"] == "ok").sum()
    with_donor = trace[trace["donor_id"].notna()]
    assert len(with_donor) >= 20
    for row in trace.itertuples():
        before = stored[stored["insert_seq"] < row.population_version]
        if before.empty or pd.isna(row.donor_id):  # no donor, or none of its tensors fit: no transfer
            assert pd.isna(row.donor_id) and pd.isna(row.prefix_len) and row.n_transferred_tensors == 0
            continue
        lcps = before["arch_seq"].map(lambda s: _lcp(s, row.arch_seq))
        best = before[lcps == lcps.max()]
        assert row.prefix_len == lcps.max(), row.job_id
        assert int(row.donor_id) in set(best[best["quality"] == best["quality"].max()]["job_id"]), row.job_id
    # the trace names a donor exactly when tensors were copied from it
    assert (with_donor["n_transferred_tensors"] > 0).all() and (with_donor["bytes_read"] > 0).any()
    assert trace["error"].isna().all() and trace["warning"].isna().all()
    inherited_all = trace["epochs"] == 0  # a child whose every tensor came from its donor trains nothing
    assert ((trace["epochs"] == 1) | inherited_all).all() and (trace.loc[inherited_all, "n_transferred_tensors"] > 0).all()
    assert set(reads["job_id"]) <= set(with_donor["job_id"])
    assert (reads.groupby("job_id").size() == with_donor.set_index("job_id")["n_transferred_tensors"].reindex(
        reads["job_id"].unique())).all()
    assert set(reads["owner_id"]) <= set(stored["job_id"])


@pytest.mark.mpi
def test_sigterm_writes_the_completed_candidates_then_resumes(tmp_path, tabular):
    """PBS walltime and qdel send SIGTERM: the master writes what completed, a rerun finishes the search."""
    spec = make_spec(tmp_path, tabular, n=50, p=10, s=3, workers=2, evaluation={"kind": "sleep", "seconds": 0.1})
    journal = spec.parent / "journal.jsonl"
    proc = subprocess.Popen(search_cmd(spec, 2), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (journal.exists() and journal.read_text().count('"e":"d"') >= 15):
        time.sleep(0.1)
    master = next(c for c in psutil.Process(proc.pid).children(recursive=True)
                  if c.environ().get("PMI_RANK") == "0" and "evotrace" in " ".join(c.cmdline()))
    master.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "SIGTERM received" in err
    partial = pd.read_parquet(spec.parent / "candidates.partial.parquet")
    assert 15 <= len(partial) < 50 and (partial["status"] == "ok").all()
    assert not (spec.parent / "candidates.parquet").exists()
    trace, _ = run_search(spec, 2)
    assert len(trace) == 50 and not (spec.parent / "candidates.partial.parquet").exists()
    merged = trace.set_index("job_id").loc[partial["job_id"]]
    assert (merged["quality"].to_numpy() == partial["quality"].to_numpy()).all()


@pytest.mark.mpi
def test_skip_store_never_stores_the_worst_and_never_donates_them(tmp_path, tabular):
    spec_path = make_spec(tmp_path, tabular, n=40, p=10, s=3, workers=2, transfer=True)
    spec = json.loads(spec_path.read_text())
    spec["transfer"]["skip_store"] = {"enabled": True, "threshold": 0.05}
    spec_path.write_text(json.dumps(spec))
    trace, _ = run_search(spec_path, 2)
    stage2 = trace[trace["job_id"] >= 10]
    assert (~stage2["stored"]).sum() > 0 and stage2["stored"].sum() > 0
    skipped = set(trace.loc[~trace["stored"], "job_id"])
    assert not skipped & set(trace["donor_id"].dropna().astype(int))
    assert algorithm1_violations(trace, 10, 3, 40) == []
