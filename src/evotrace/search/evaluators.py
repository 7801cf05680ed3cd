"""All of the project's DeepHyper glue, in one place: the search adapter (`TracedSearch`, Algorithm 1
behind `deephyper.hpo.Search`), the evaluators the master drives (`lean_mpicomm`, `SimulatedEvaluator`)
and the callback through which results reach the master (`Results`).

Public DeepHyper API is used wherever it exists: `deephyper.hpo.Search` and `HpProblem`,
`deephyper.evaluator.Evaluator`/`MPICommEvaluator`/`JobStatus`, evaluator callbacks passed through the
`callbacks` argument (what `method_kwargs` carries in `Evaluator.create`), `MemoryStorage`. Three spots
need DeepHyper's internals, because its public API costs O(N) per candidate or O(N) memory at N jobs;
each says why in its docstring: `LeanStorage` (MemoryStorage's `_data` layout), `Lean` (the evaluator's
job lists and the `num_jobs_submitted` count, which lists every job of the storage at each call), and
`_recent_history` (a Search keeps every Job in its history). A virtual-clock evaluator implements
`submit`/`gather` itself, as an Evaluator subclass must, with the base class's job hooks. Worker ranks
never import DeepHyper: `worker_task` ships them a plain `worker.Assignment`, and `driver.serve` takes
part in the collectives of MPICommEvaluator's constructor before mpi4py.futures' worker loop.

Checked on DeepHyper 0.12.0, 0.13.0, 0.13.1 and 0.13.2 (docs/architecture.md, DeepHyper glue, says which
tests); pyproject.toml allows that range."""

from __future__ import annotations

import functools
import heapq
import time

from deephyper.evaluator import Evaluator, JobStatus, MaximumJobsSpawnReached
from deephyper.evaluator.callback import Callback
from deephyper.evaluator.storage import MemoryStorage
from deephyper.hpo import HpProblem, Search

from .regevo import StarvedPopulation
from .worker import Assignment


def problem(num_choices) -> HpProblem:
    """The DeepHyper problem of a space: one integer variable per position."""
    out = HpProblem()
    for i, n in enumerate(num_choices):
        out.add_hyperparameter((0, int(n) - 1), f"x{i}")
    return out


class Arguments(dict):
    """A job's arguments. DeepHyper deep-copies them twice per job (when the Job is made, and when the
    search unpacks it to tell results), O(size of the popularity snapshot) each; nothing changes them
    after submission, so the copies are this one dict."""

    def __deepcopy__(self, memo):
        return self


def _recent_history(history):
    """A Search's history that keeps only the last gathered batch (DeepHyper keeps every Job for the
    whole run and turns them all into a DataFrame at the end: O(N) memory and time). The master's
    trace holds what matters; the count stays right for DeepHyper's own checks. Derived from the
    instance's class, so no private module is imported."""

    class RecentHistory(type(history)):
        def extend(self, jobs):
            self.count = getattr(self, "count", 0) + len(jobs)
            if jobs:
                self.jobs = []
            super().extend(jobs)

        def __len__(self):
            return getattr(self, "count", 0)

    return RecentHistory(history.problem)


class TracedSearch(Search):
    """Algorithm 1 behind DeepHyper's Search interface: `_ask` takes candidates from the master (new ones,
    or those a killed run left unfinished). Results reach the master through the evaluator's `Results`
    callback, which sees every gathered job with its metadata, also the last ones DeepHyper gathers
    after its loop without telling the search; `_tell` journals them."""

    def __init__(self, master):
        super().__init__(problem(master.spec["num_choices"]), random_state=master.spec["seed"],
                         log_dir=str(master.out_dir), checkpoint_history_to_csv=False)
        self.m = master
        self.gather_batch_size = master.spec["search"]["quanta"]
        self.history = _recent_history(self.history)
        self._owed = 0
        self._running = 0

    def _ask(self, n=1):
        self._owed += n
        configs = []
        while self._owed > 0:
            if self.m.retry:
                record = self.m.retry.popleft()
            elif self.m.core.can_create():
                record = self.m.create(self.m.core.create())
            else:
                break
            configs.append(Arguments(self.m.config_for(record)))
            self._owed -= 1
        if self.m.core.done_creating and not self.m.retry:
            self._owed = 0
        self._running += len(configs)
        if not configs and self._running == 0 and self.m.book.n_done < self.m.n:
            raise StarvedPopulation(
                f"population has {len(self.m.core.population)} of p={self.m.p} members, no candidate "
                f"can be created and none is running"
            )
        self.m.flush()  # in the journal before any of them starts: a resume re-submits them as they were
        return configs

    def _tell(self, results):
        self._running -= len(results)
        self.m.flush()


class Results(Callback):
    """Hands each gathered job (objective and metadata) to the attached master, and lets the evaluator
    forget it."""

    def __init__(self, evaluator):
        self.evaluator = evaluator
        self.master = None

    def on_done(self, job):
        ev = self.evaluator
        ev.storage.forget(job.id)
        ev.jobs.pop(job, None)
        if self.master is not None:
            self.master.complete(int(job.args["job_id"]), job.objective, job.metadata)


class LeanStorage(MemoryStorage):
    """MemoryStorage that keeps a job only while it runs (arguments are not stored at all): stock
    MemoryStorage keeps every job's arguments and metadata for the whole run. Relies on MemoryStorage's
    `_data[search_id]["data"][partial_id]` layout (the same in 0.12.0 to 0.13.2)."""

    def store_job_in(self, job_id, args=None, kwargs=None) -> None:
        pass

    def store_job(self, job_id, key, value) -> None:
        search_id, partial_id = job_id.split(".")
        job = self._data[search_id]["data"].get(partial_id)
        if job is not None:
            job[key] = value

    def load_job_status(self, job_id) -> int:
        search_id, partial_id = job_id.split(".")
        job = self._data[search_id]["data"].get(partial_id)
        return JobStatus.DONE.value if job is None else job["status"]

    def forget(self, job_id) -> None:
        search_id, partial_id = job_id.split(".")
        self._data[search_id]["data"].pop(partial_id, None)

    def jobs_held(self) -> int:
        return sum(len(search["data"]) for search in self._data.values())


class _Live(dict):
    """The list DeepHyper keeps of running jobs (or their ids), as an insertion-ordered set: DeepHyper
    appends and removes one at a time, and `list.remove` costs O(W) per job."""

    def append(self, item) -> None:
        self[item] = None
        self.total = getattr(self, "total", 0) + 1

    def remove(self, item) -> None:
        del self[item]


class _Gathered:
    """The list DeepHyper keeps of every gathered job id, only counted (it grows to N strings)."""

    def __init__(self):
        self.count = 0

    def append(self, _item) -> None:
        self.count += 1

    def __len__(self) -> int:
        return self.count


class Lean:
    """Mixin for an Evaluator: O(1) job counts, no scan for other searches' jobs, nothing kept of a
    gathered job. Stock DeepHyper 0.13 counts submitted jobs by listing every job of the storage (at
    each of ~3 calls per candidate), scans the storage for other searches' jobs at every gather, and
    keeps every job id and Job object for the whole run. One search owns its storage here (so the
    offset DeepHyper subtracts for an earlier search on the same evaluator is 0), and the master's
    trace keeps what matters. Replaces the evaluator's `jobs`, `job_id_submitted` and
    `job_id_gathered` lists, used as append/remove/len in 0.12.0 to 0.13.2."""

    def __init__(self, run_function, callbacks=None, **kwargs):
        self.storage = LeanStorage()
        self.results = Results(self)
        super().__init__(run_function, callbacks=[self.results, *(callbacks or [])], storage=self.storage, **kwargs)
        self.jobs, self.job_id_submitted, self.job_id_gathered = _Live(), _Live(), _Gathered()

    @property
    def num_jobs_submitted(self) -> int:
        return getattr(self.job_id_submitted, "total", 0)

    def gather_other_jobs_done(self):
        return []

    def held(self) -> dict:
        """What the evaluator still keeps: jobs in storage, Job objects, submitted ids, history jobs."""
        history = getattr(self.search, "history", None)
        return {"storage_jobs": self.storage.jobs_held(), "jobs": len(self.jobs),
                "submitted_ids": len(self.job_id_submitted), "history_jobs": len(getattr(history, "jobs", ()))}


def worker_task(job, run_function_kwargs: dict):
    """What a worker rank receives for `job`: the run function applied to the job's parameters. Stock
    MPICommEvaluator ships a RunningJob, which carries the evaluator's storage and whose unpickling
    imports deephyper.evaluator (ConfigSpace, scikit-learn, scipy: ~3 s of CPU per rank)."""
    return functools.partial(job.run_function, Assignment(dict(job.args)), **run_function_kwargs)


def lean_mpicomm(run_function, **kwargs):
    """DeepHyper's MPICommEvaluator, lean (see `Lean`), whose jobs reach the workers as `worker_task`s."""
    from deephyper.evaluator import MPICommEvaluator

    class LeanMPICommEvaluator(Lean, MPICommEvaluator):
        async def execute(self, job):
            """MPICommEvaluator.execute (0.12.0 to 0.13.2) without a timeout, shipping `worker_task`."""
            if self.timeout is not None:  # cancelling a timed-out job needs DeepHyper's own RunningJob
                return await super().execute(job)
            async with self.sem:
                job.status = JobStatus.RUNNING
                output = await self.loop.run_in_executor(
                    self._pool_executor, worker_task(job, self.run_function_kwargs))
                return self._update_job_when_done(job, output)

    return LeanMPICommEvaluator(run_function, **kwargs)


class VirtualClock:
    """Mixin for an Evaluator: W virtual workers on a virtual clock. `run_function(args, worker, now)`
    returns the job's duration in virtual seconds and its output ({"objective", "metadata"}, as a
    real worker's); a submitted job goes to the lowest-numbered idle worker, and gather returns the
    `size` jobs that end first, advancing the clock to the last of them. The job bookkeeping is
    DeepHyper's own (storage, job lists, scans), so that only `Lean` changes its cost."""

    def _start_clock(self, num_workers: int) -> None:
        self.now = 0.0
        self.worker_seconds = 0.0  # CPU time spent computing what the virtual workers report
        self._idle = list(range(1, num_workers + 1))
        self._running: list[tuple[float, int, int, object]] = []
        self._order = 0

    async def execute(self, job):  # pragma: no cover - jobs never go through asyncio here
        raise NotImplementedError("a virtual-clock evaluator runs jobs in submit()")

    def clock(self, epoch: float | None = None) -> float:
        """The master's clock: virtual seconds since the search started."""
        return self.now if epoch is None else epoch

    def attach(self, master) -> None:
        """Drive `master` on virtual time (continuing from a resumed search's last time). A resumed search's
        virtual workers get back what its journaled results stored (`restore`, where they keep state)."""
        self.now = master.clock.offset
        master.clock = self.clock
        if master.book.done and hasattr(self.run_function, "restore"):
            self.run_function.restore(master.book.created, master.book.done.values())

    def submit(self, args_list):
        for args in args_list:
            if 0 < self.maximum_num_jobs_submitted <= self.num_jobs_submitted:
                raise MaximumJobsSpawnReached
            if not self._idle:
                raise RuntimeError(f"submitted more jobs than the {self.num_workers} virtual workers")
            job_id = self._storage.create_new_job(self._search_id)
            self._storage.store_job_in(job_id, args=(args,))
            job = self._create_job(job_id, args, None, self._storage)
            self.job_id_submitted.append(job_id)
            job.context.search = self.search
            self.jobs.append(job)
            self._on_launch(job)
            job.status = JobStatus.RUNNING
            worker = heapq.heappop(self._idle)
            t0 = time.process_time()
            duration, output = self.run_function(job.args, worker, self.now)
            self.worker_seconds += time.process_time() - t0
            job.set_output(output)
            self._order += 1
            heapq.heappush(self._running, (self.now + duration, self._order, worker, job))

    def gather(self, type, size: int = 1):
        n = len(self._running) if type == "ALL" else min(size, len(self._running))
        done = []
        for _ in range(n):
            end, _, worker, job = heapq.heappop(self._running)
            self.now = max(self.now, end)
            heapq.heappush(self._idle, worker)
            self._on_done(job)
            self.job_id_gathered.append(job.id)
            self.job_id_submitted.remove(job.id)
            done.append(job)
        other = self.gather_other_jobs_done()
        for cb in self._callbacks:
            cb.on_gather(done, other)
        return (done, other) if other else done

    def close(self):
        for cb in self._callbacks:
            cb.on_close()
        return []


class SimulatedEvaluator(Lean, VirtualClock, Evaluator):
    """The simulated search's evaluator: virtual workers (VirtualClock), lean bookkeeping (Lean)."""

    def __init__(self, run_function, num_workers: int, callbacks=None):
        super().__init__(run_function, num_workers=num_workers, callbacks=callbacks)
        self._start_clock(num_workers)


class StockSimulatedEvaluator(VirtualClock, Evaluator):
    """The same virtual workers with DeepHyper's stock bookkeeping (for bench/bench_scale.py)."""

    def __init__(self, run_function, num_workers: int, callbacks=None):
        super().__init__(run_function, num_workers=num_workers, callbacks=callbacks, storage=MemoryStorage())
        self._start_clock(num_workers)
