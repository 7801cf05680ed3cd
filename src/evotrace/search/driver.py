"""The master side of a search: DeepHyper's asynchronous search loop over MPI workers, driving
Algorithm 1, choosing donors, and keeping the trace in memory until the end (or a SIGTERM)."""

from __future__ import annotations

import gc
import logging
import os
import shutil
import signal
import socket
import sys
import time
from collections import deque
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import __version__
from ..durable import TMP_PREFIX, temp_path
from ..trace import (CANDIDATES, CREATED, JUDGED, READ_COLUMNS, REPORTED, TENSOR_READS, check_packed, no_reads,
                     pack_reads, packed_ids, unpack_reads, with_run_metadata)
from .journal import Journal, JournalError, SearchLock, SearchLocked, changed_keys, fingerprint
from .regevo import Candidate, RegularizedEvolution

log = logging.getLogger("evotrace.search")


ABORT_GRACE_S = 1.0  # well inside the time between SIGTERM and SIGKILL: PBS Pro kill_delay 10 s, Slurm KillWait 30 s (defaults)


class Interrupted(RuntimeError):
    """SIGTERM/SIGINT reached the master (PBS walltime, qdel, Ctrl-C)."""


class Clock:
    """Seconds since the search started, one wall clock for all ranks; a resumed search continues
    from its last recorded time rather than counting the time it was down."""

    def __init__(self, offset: float = 0.0):
        self.origin = time.time()
        self.offset = offset

    def __call__(self, epoch: float | None = None) -> float:
        return (time.time() if epoch is None else epoch) - self.origin + self.offset


class ReadLog:
    """Each job's tensor reads, as its worker packed them (trace.pack_reads): a few strings per job,
    which the journal takes as they are. A 100k-candidate search makes millions of reads; the master
    never holds or handles one object per read, except the ids the popularity window counts."""

    def __init__(self):
        self._jobs: dict[int, dict] = {}

    def __setitem__(self, job_id: int, reads: dict | list[dict]) -> None:
        """Keep a job's reads; older journals' forms (a list per column, a dict per read) are packed.
        ValueError when a column does not hold as many values as there are ids."""
        if isinstance(reads, list):  # a dict per read: the journal of an evotrace before reads were columns
            reads = {c: [r[c] for r in reads] for c in READ_COLUMNS}
        if "n" not in reads:  # a list per column
            reads = pack_reads(reads)
        check_packed(reads)
        self._jobs[job_id] = reads

    def journal_form(self, job_id: int) -> dict:
        return self._jobs.get(job_id) or no_reads()

    def tensor_ids(self, job_id: int) -> list[str]:
        return packed_ids(self._jobs[job_id]) if job_id in self._jobs else []

    def __contains__(self, job_id) -> bool:
        return job_id in self._jobs

    def __delitem__(self, job_id: int) -> None:
        self._jobs.pop(job_id, None)

    def __iter__(self):
        return iter(self._jobs)

    def __len__(self) -> int:
        return len(self._jobs)

    def held_bytes(self) -> int:
        """Bytes of the packed reads held."""
        return sum(sys.getsizeof(form) + sum(map(sys.getsizeof, form.values())) for form in self._jobs.values())

    def columns(self, jobs: list[int]) -> dict:
        """The READ_COLUMNS of `jobs`, in order (trace.unpack_reads), a `job_id` column, and the reads of
        each job (`counts`)."""
        packs = [self._jobs[j] for j in jobs]
        cols = unpack_reads(packs)
        cols["counts"] = np.asarray([p["n"] for p in packs], dtype=np.int64)
        cols["job_id"] = np.repeat(np.asarray(jobs, dtype=np.int64), cols["counts"])
        return cols


class TraceBook:
    """The trace of one search, streamed to Parquet: a candidate's row is written once it and every
    candidate created before it are done (so rows stay in job_id order), `batch` rows at a time, to
    temporary files renamed at the end. Only the candidates still running and those done but waiting
    for an earlier one are held, so a search of any length runs in bounded memory."""

    # rows per write (one Parquet row group): small enough that writing, which costs the master in proportion
    # to the reads, happens every thousand candidates or so instead of in long pauses (bench/bench_scale.py)
    batch = 1024

    def __init__(self, run: str, out_dir: Path, params):
        self.run = run
        self.out_dir = out_dir
        self.params = params  # called once, when the files are opened: the run parameters for their metadata
        self.created: dict[int, dict] = {}  # rows not written yet
        self.done: dict[int, dict] = {}
        self.reads = ReadLog()
        self.n_done = self.n_failed = 0
        self.keep = True  # False: rows are dropped once ready (the tracing-overhead benchmark)
        self._next = 0  # the lowest job_id whose row is not written
        self._ready: list[int] = []
        self._writers: dict[str, tuple[pq.ParquetWriter, Path]] = {}

    def finished(self, record: dict) -> None:
        """A candidate's completion record (its reads still inside, under "tensor_reads")."""
        job_id = record["job_id"]
        self.done[job_id] = record
        self.reads[job_id] = record.get("tensor_reads") or no_reads()
        self.n_done += 1
        self.n_failed += record["status"] == "failed"

    def is_done(self, job_id: int) -> bool:
        return job_id < self._next or job_id in self.done

    def advance(self) -> None:
        """Queue the rows that became writable; write a batch when one is full."""
        while self._next in self.done:
            self._ready.append(self._next)
            self._next += 1
        if len(self._ready) >= self.batch:
            self._write(self._ready)
            self._ready = []

    def _candidate_table(self, jobs: list[int], schema: pa.Schema) -> pa.Table:
        """The candidates rows of `jobs`, built column by column (a dict per row and Table.from_pylist took
        about 60 us a row, the largest part of writing a batch)."""
        created = [self.created[j] for j in jobs]
        done = [self.done[j] for j in jobs]
        cols = {"run": [self.run] * len(jobs)}
        cols.update({k: [c.get(k) for c in created] for k in CREATED})
        # donor_id and prefix_len from the report: the donor that was used, not the one planned
        cols.update({k: [d.get(k) for d in done] for k in (*JUDGED, *REPORTED)})
        return pa.table([pa.array(cols[f.name], f.type) if f.name in cols else pa.nulls(len(jobs), f.type)
                         for f in schema], schema=schema)

    def _write(self, jobs: list[int]) -> None:
        if self.keep:
            if not self._writers:
                self._open()
            writer, _ = self._writers["candidates"]
            writer.write_table(self._candidate_table(jobs, writer.schema))
            writer, _ = self._writers["tensor_reads"]
            writer.write_table(self._read_table(jobs, writer.schema))
        for j in jobs:
            del self.created[j], self.done[j], self.reads[j]

    def _open(self) -> None:
        params = self.params()
        for name, schema in (("candidates", CANDIDATES), ("tensor_reads", TENSOR_READS)):
            tmp = temp_path(self.out_dir / f"{name}.parquet")
            self._writers[name] = (pq.ParquetWriter(tmp, with_run_metadata(schema, params), compression="zstd"), tmp)

    def _read_table(self, jobs: list[int], schema: pa.Schema) -> pa.Table:
        """The tensor_reads rows of `jobs`, built column by column (millions of rows at scale)."""
        cols = self.reads.columns(jobs)
        counts = cols.pop("counts")
        start = np.asarray([np.nan if self.done[j]["start_time"] is None else self.done[j]["start_time"] for j in jobs])
        start = np.repeat(start, counts)
        cols.update(run=[self.run] * len(cols["job_id"]),
                    worker=np.repeat(np.asarray([self.done[j]["worker"] for j in jobs], dtype=np.int32), counts),
                    start_time=pa.array(start, mask=np.isnan(start)))
        return pa.table([cols[f.name] if isinstance(cols[f.name], pa.Array) else pa.array(cols[f.name], f.type)
                         for f in schema], schema=schema)

    def write(self, suffix: str = "") -> tuple[Path, Path]:
        """Write what is left and publish both files (rename): the trace of every done candidate, ended
        early (suffix ".partial") when some are still running. The book is closed afterwards."""
        self.advance()
        rest = self._ready + sorted(j for j in self.done if j >= self._next)
        self._ready = []
        if rest or not self._writers:
            self._write(rest)
        if not self._writers:
            self._open()
        paths = []
        for name, (writer, tmp) in self._writers.items():
            writer.close()
            path = self.out_dir / f"{name}{suffix}.parquet"
            os.replace(tmp, path)
            paths.append(path)
        self._writers = {}
        return paths[0], paths[1]


class Master:
    def __init__(self, spec: dict, out_dir: Path, workers: int, clock_offsets: dict | None = None):
        """`clock_offsets`: {worker rank: (offset_s, round_trip_s)}, each worker's wall clock minus the
        master's (`estimate_clock_offsets`); worker times are stored on the master's clock."""
        self.spec = spec
        self.out_dir = Path(out_dir)
        self.workers = workers
        s = spec["search"]
        self.n, self.p = s["candidates"], s["population"]
        self.stage_boundary = s["stage_boundary"]
        self.transfer = spec["transfer"]["enabled"]
        self.book = TraceBook(spec["run"], self.out_dir, self.params)
        self.journal = Journal(self.out_dir / "journal.jsonl")
        self.tracing = spec.get("trace", True)  # False only for the tracing-overhead benchmark
        self.book.keep = self.tracing
        self.pending: list[dict] = []
        self.retry: deque[dict] = deque()
        self.index = None
        self.best = -np.inf
        self.resumed_from = 0
        self.clock_offsets = {int(r): tuple(v) for r, v in (clock_offsets or {}).items()}
        self.lock = SearchLock(self.out_dir / "search.lock")
        self.lock.acquire()
        try:
            self._resume_or_start()
        except BaseException:
            self.lock.release()
            raise

    # --- state -------------------------------------------------------------------------------
    def _resume_or_start(self):
        records = self.journal.read() if self.journal.exists() else []
        if records:
            self._check_fingerprint(records[0])
            records = records[1:]
        self._remove_leftovers(fresh=not records)
        if not records:  # a fresh search: models of an earlier one must not become donors
            shutil.rmtree(self.out_dir / "repository", ignore_errors=True)
            self.pending.append({"e": "spec", "fingerprint": fingerprint(self.spec)})
        self.popularity = None
        if self.transfer:
            from ..cache import PopularityWindow
            from ..transfer import PrefixIndex

            self.index = PrefixIndex()
            cache = self.spec["transfer"]["cache"]
            if cache["policy"] == "popularity":
                self.popularity = PopularityWindow(cache["window"], cache["min_donations"])
        for r in records:
            (self.book.created if r["e"] == "c" else self.book.done)[r["job_id"]] = r
        for d in list(self.book.done.values()):
            try:
                self.book.finished(d)
                unpack_reads([self.book.reads.journal_form(d["job_id"])])  # decodes: damage shows now, not at a write
            except (KeyError, TypeError, ValueError) as err:  # binascii.Error is a ValueError
                raise JournalError(
                    f"{self.journal.path}: the tensor reads of job {d['job_id']} cannot be read ({type(err).__name__}: "
                    f"{err}). Repair or delete that job's result line and rerun (the job then runs again), or "
                    f"delete the journal to start afresh") from None
            d.pop("tensor_reads", None)
        created = len(self.book.created)
        rng = np.random.default_rng(self.spec["seed"])
        if self.book.created:  # continue the random stream where the last created candidate left it
            rng.bit_generator.state = self.book.created[max(self.book.created)]["rng"]
        self.core = RegularizedEvolution(self.spec["num_choices"], self.p, self.spec["search"]["sample"], self.n,
                                         rng, self.spec["search"]["mutation"]["positions"], self.stage_boundary)
        inserted = [(d["insert_seq"], j, self.book.created[j]["arch_seq"], d["quality"])
                    for j, d in self.book.done.items() if d["insert_seq"] is not None]
        stage1 = [j for j, c in self.book.created.items() if c["stage"] == 1]
        self.core.restore(created, inserted, len(stage1),
                          sum(j in self.book.done and self.book.done[j]["quality"] is None for j in stage1))
        for j in sorted(self.book.created):
            c = self.book.created[j]
            if j not in self.book.done:
                self.retry.append(c)
        for j, d in self.book.done.items():  # journal order = completion order, as in the first run
            self._observe_reads(j)
            if d["quality"] is not None:
                self.best = max(self.best, d["quality"])
            if self.index is not None and d.get("stored"):
                self.index.add(j, self.book.created[j]["arch_seq"], d["quality"])
        times = [d["end_time"] for d in self.book.done.values() if d.get("end_time") is not None]
        self.clock = Clock(max(times, default=0.0))
        self.resumed_from = self.book.n_done
        if records:
            log.info("resuming %s: %d/%d completed, %d created, %d to re-submit", self.spec["run"],
                     self.book.n_done, self.n, created, len(self.retry))
        self.started = time.time()
        self.journal.open()
        self.flush()

    def _check_fingerprint(self, first: dict) -> None:
        path = self.journal.path
        if first.get("e") != "spec":
            raise JournalError(f"{path} has no spec fingerprint (written by an older evotrace?): cannot tell whether "
                               f"it belongs to this spec. Move it away (and repository/) to start afresh")
        changed = changed_keys(first["fingerprint"], fingerprint(self.spec))
        if changed:
            old, new = first["fingerprint"], fingerprint(self.spec)
            shown = "; ".join(f"{k}: {old.get(k, '<absent>')!r} -> {new.get(k, '<absent>')!r}" for k in changed[:10])
            raise JournalError(
                f"{path} belongs to a search with another spec ({len(changed)} changed key(s): {shown}). Resuming "
                f"would mix two searches. Restore the original settings to resume, or delete {path} (and "
                f"{self.out_dir / 'repository'}) to start afresh; only the number of workers may change")

    def _remove_leftovers(self, fresh: bool) -> None:
        """Temporary files of writes a killed search left behind: trace writes here, and (on resume)
        the repository's unpublished files. No writer runs now: the lock is held, the workers wait."""
        for tmp in self.out_dir.glob(f"{TMP_PREFIX}*"):
            tmp.unlink(missing_ok=True)
        if self.transfer and not fresh and (self.out_dir / "repository").is_dir():
            from ..repository import ModelRepository

            removed = ModelRepository(self.out_dir / "repository", fsync=False).clean(max_age_s=0)
            if removed:
                log.info("removed %d leftover file(s) of interrupted repository writes", len(removed))

    def create(self, cand: Candidate) -> dict:
        record = {"e": "c", "job_id": cand.job_id, "stage": cand.stage, "arch_seq": list(cand.arch_seq),
                  "parent_id": cand.parent_id, "mutation_pos": cand.mutation_pos,
                  "population_version": cand.population_version, "donor_id": None, "prefix_len": None,
                  "submit_time": self.clock(), "rng": self.core.rng.bit_generator.state}
        if self.index is not None:
            found = self.index.best(cand.arch_seq)
            if found is not None:
                record["donor_id"], record["prefix_len"] = int(found[0]), int(found[1])
        self.book.created[cand.job_id] = record
        self.pending.append(record)
        return record

    def config_for(self, record: dict) -> dict:
        config = {f"x{i}": v for i, v in enumerate(record["arch_seq"])}
        config.update(job_id=record["job_id"], arch_seq=record["arch_seq"], donor_id=record["donor_id"],
                      prefix_len=record["prefix_len"])
        if record["donor_id"] is not None and self.popularity is not None:
            config["tensor_popularity"] = self.popularity.popular_counts()
        if self.transfer and self.spec["transfer"]["skip_store"]["enabled"]:
            config["population_qualities"] = self.core.qualities()
        record["submit_time"] = self.clock()
        return config

    def complete(self, job_id: int, objective, meta: dict) -> None:
        ok = not isinstance(objective, str) and objective is not None and np.isfinite(objective)
        quality = float(objective) if ok else None
        created = self.book.created[job_id]
        insert_seq = self.core.complete(job_id, created["arch_seq"], quality)
        error = None if ok else meta.get("error") or f"non-finite or failed objective {objective!r}"
        record = {"e": "d", "job_id": job_id, **{k: meta.get(k, default) for k, default in REPORTED.items()},
                  "start_time": self._master_time(meta, "start_epoch"),
                  "end_time": self._master_time(meta, "end_epoch") if "end_epoch" in meta else self.clock(),
                  "quality": quality, "status": "ok" if ok else "failed", "error": error,
                  "insert_seq": insert_seq, "tensor_reads": meta.get("tensor_reads") or no_reads()}
        record["stored"] = bool(record["stored"])
        self.book.finished(record)
        record["tensor_reads"] = self.book.reads.journal_form(job_id)
        self._observe_reads(job_id)
        self.pending.append(record)
        if ok:
            self.best = max(self.best, quality)
            if self.index is not None and record["stored"]:
                self.index.add(job_id, created["arch_seq"], quality)
        self._progress()

    def _master_time(self, meta: dict, key: str) -> float | None:
        """A worker's wall-clock epoch on the master's clock, in seconds since the search started."""
        if key not in meta:
            return None
        offset = self.clock_offsets.get(meta.get("worker"), (0.0, 0.0))[0]
        return self.clock(meta[key] - offset)

    def _observe_reads(self, job_id: int) -> None:
        """The popularity cache policy counts each tensor's donations over the last W candidates."""
        if self.popularity is not None:
            self.popularity.observe(self.book.reads.tensor_ids(job_id))

    def flush(self) -> None:
        if self.tracing:
            self.journal.append(self.pending)
        for record in self.pending:  # journaled: the generator state and the reads (in book.reads) are not kept twice
            record.pop("rng", None)
            record.pop("tensor_reads", None)
        self.pending = []
        self.book.advance()  # rows reach the trace files only once journaled

    def _progress(self) -> None:
        done = self.book.n_done
        step = max(1, self.n // 50)
        if done % step and done != self.n:
            return
        elapsed = time.time() - self.started
        rate = (done - self.resumed_from) / elapsed * 60 if elapsed > 0 else 0.0
        log.info("%s: %d/%d done (%d failed), best quality %.4f, elapsed %.1f s, %.1f candidates/min",
                 self.spec["run"], done, self.n, self.book.n_failed, self.best, elapsed, rate)

    def params(self) -> dict:
        spec = self.spec
        return {"run": spec["run"], "study": spec["study"], "candidates": self.n, "population": self.p,
                "sample": spec["search"]["sample"], "workers": self.workers, "seed": spec["seed"],
                "space": spec["space"], "space_options": spec["space_options"], "num_choices": spec["num_choices"],
                "dataset": spec["dataset"], "epochs": spec["epochs"], "transfer": self.transfer,
                "transfer_options": spec["transfer"], "mutation": spec["search"]["mutation"],
                "quanta": spec["search"]["quanta"], "stage_boundary": self.stage_boundary,
                "training": spec["training"],
                "evaluation": spec["evaluation"], "evotrace_version": __version__,
                "clock_offsets": {str(r): {"offset_s": o, "round_trip_s": rtt}
                                  for r, (o, rtt) in sorted(self.clock_offsets.items())}}

    def write(self, suffix: str = "") -> tuple[Path, Path]:
        self.flush()
        return self.book.write(suffix)


def run_master(evaluator, spec: dict, out_dir: Path, workers: int, clock_offsets: dict | None = None) -> int:
    """Run the search on a lean evaluator (evaluators.Lean), whose `results` callback feeds the master."""
    master = Master(spec, out_dir, workers, clock_offsets)
    if hasattr(evaluator, "attach"):  # a simulated evaluator brings its own (virtual) clock
        evaluator.attach(master)
    evaluator.results.master = master
    # Everything alive now (the modules of torch, DeepHyper, pandas: some 300k objects) lives as long as the
    # search: frozen, full collections no longer traverse it. Unfrozen, each one took 0.3-0.6 s and came
    # every few thousand candidates, growing with the heap (bench/bench_scale.py).
    gc.collect()
    gc.freeze()
    try:
        return _search(master, evaluator, out_dir)
    finally:
        gc.unfreeze()
        evaluator.results.master = None  # jobs an evaluator cancels on close are no results
        master.lock.release()


def _search(master: Master, evaluator, out_dir: Path) -> int:
    remaining = master.n - master.book.n_done

    def interrupt(signum, _frame):
        raise Interrupted(signal.Signals(signum).name)

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGINT)}
    t0 = time.perf_counter()
    try:
        if remaining > 0:
            from .evaluators import TracedSearch

            TracedSearch(master).search(evaluator, max_evals=remaining, max_evals_strict=True)
    except Interrupted as err:
        cand, _ = master.write(".partial")
        log.error("%s received: wrote %d completed candidates to %s; run the same command again to resume",
                  err, master.book.n_done, cand)
        master.journal.close()
        return 143
    except BaseException:
        if master.book.n_done:  # not master.write: the error may be the journal's own (disk full)
            master.book.write(".partial")
        master.journal.close()
        raise
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    if master.book.n_done != master.n:
        master.write(".partial")
        raise RuntimeError(f"search ended with {master.book.n_done} of {master.n} candidates")
    if not master.tracing:
        log.info("search loop took %.3f s (tracing off: no trace written)", time.perf_counter() - t0)
        master.journal.close()
        return 0
    cand, reads = master.write()
    log.info("search loop took %.3f s", time.perf_counter() - t0)
    for stale in out_dir.glob("*.partial.parquet"):
        stale.unlink()
    master.journal.retire()
    log.info("wrote %s and %s", cand, reads)
    return 0


def estimate_clock_offsets(comm, skew: float = 0.0, rounds: int = 8) -> dict[int, tuple[float, float]]:
    """On rank 0: {worker rank: (offset_s, round_trip_s)}, each worker's wall clock minus the master's,
    from the ping-pong with the lowest round trip. The worker's reading lies within that round trip, so
    the offset is known within half of it: an offset smaller than that is no evidence of skew (clocks on
    the master's own node, for one) and is taken as 0. Other ranks answer and return {}. `skew` shifts
    this rank's clock (a test hook: spec["inject_clock_skew"])."""
    tag = 71
    if comm.Get_rank() != 0:
        for _ in range(rounds):
            comm.recv(source=0, tag=tag)
            comm.send(time.time() + skew, dest=0, tag=tag)
        return {}
    offsets = {}
    for rank in range(1, comm.Get_size()):
        best = None
        for _ in range(rounds):
            t0 = time.time()
            comm.send(None, dest=rank, tag=tag)
            remote = comm.recv(source=rank, tag=tag)
            t1 = time.time()
            if best is None or t1 - t0 < best[1]:
                best = (remote - (t0 + t1) / 2, t1 - t0)
        offset, rtt = best
        offsets[rank] = (0.0 if abs(offset) <= rtt / 2 else offset, rtt)
    return offsets


def run(spec_path: str, out_dir: str, cache_dir: str | None = None) -> int:
    """Entry point on every rank: rank 0 runs the search, ranks 1..W train candidates."""
    from mpi4py import MPI

    from ..runspec import load_spec
    from .worker import evaluate

    if not MPI.Is_initialized():
        MPI.Init_thread()  # deephyper.evaluator sets mpi4py.rc.initialize = False
    comm = MPI.COMM_WORLD
    spec_path = str(Path(spec_path).resolve())
    spec = load_spec(spec_path)
    out = Path(out_dir).resolve()
    if comm.Get_size() < 2:
        raise SystemExit("evotrace search needs at least 2 MPI ranks (rank 0 = master, ranks 1..W = workers): "
                         "launch it with mpiexec -n W+1")
    if comm.Get_rank() == 0:
        out.mkdir(parents=True, exist_ok=True)
        expected = spec["search"]["workers"]
        if comm.Get_size() - 1 != expected:
            log.warning("spec asks for %d workers, running with %d", expected, comm.Get_size() - 1)
        log.info("search %s on %d workers (host %s), %d candidates, population %d, sample %d",
                 spec["run"], comm.Get_size() - 1, socket.gethostname(), spec["search"]["candidates"],
                 spec["search"]["population"], spec["search"]["sample"])
    comm.Barrier()
    offsets = estimate_clock_offsets(comm, spec.get("inject_clock_skew", {}).get(str(comm.Get_rank()), 0.0))
    if offsets:
        worst = max(offsets.items(), key=lambda kv: abs(kv[1][0]))
        log.info("worker clocks: largest offset %+.6f s (rank %d), round trips <= %.6f s", worst[1][0], worst[0],
                 max(rtt for _, rtt in offsets.values()))
    if comm.Get_rank() != 0:
        from .worker import prepare

        prepare()  # while the master starts DeepHyper
        serve(comm)
        return 0
    from .evaluators import lean_mpicomm

    comm.Ibarrier().Wait()  # DeepHyper imported: the workers, waiting in serve() without spinning, go on
    evaluator = lean_mpicomm(evaluate, run_function_kwargs={"spec_path": spec_path, "cache_dir": cache_dir,
                                                            "repository": str(out / "repository")})
    code = 0
    with evaluator as ev:
        try:
            code = run_master(ev, spec, out, comm.Get_size() - 1, offsets)
        except (SearchLocked, JournalError) as err:  # the message says what to do: no traceback
            log.error("search %s: %s", spec["run"], err)
            code = 1
        except BaseException:
            log.exception("search %s failed", spec["run"])
            code = 1
        if code:
            # running workers cannot be recalled: end every rank now, the trace is already written. mpiexec
            # forwards a rank's stderr through a pipe that Abort may tear down unread: the message that says
            # what was written and how to resume must get through first
            logging.shutdown()
            sys.stderr.flush()
            time.sleep(ABORT_GRACE_S)
            comm.Abort(code)
    return code


def serve(comm, root: int = 0) -> None:
    """A worker rank of `evaluators.lean_mpicomm`, without DeepHyper: a sleeping wait for the master's
    nonblocking barrier (once it has imported DeepHyper), the collectives of MPICommEvaluator's constructor
    (a barrier, then the broadcast of the search id; 0.12.0 to 0.13.2), then mpi4py.futures' worker loop,
    which runs the master's `worker_task`s until the master shuts it down."""
    from mpi4py.futures import MPICommExecutor

    from .worker import release_state

    master_ready = comm.Ibarrier()  # MPI's blocking waits spin: W waiting ranks would starve the master's start
    while not master_ready.Test():
        time.sleep(0.01)
    comm.Barrier()
    comm.bcast(None, root)
    with MPICommExecutor(comm, root=root):
        pass
    release_state()
