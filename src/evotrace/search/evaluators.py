"""DeepHyper evaluators whose master-side cost per job does not grow with the number of jobs.

Stock DeepHyper 0.13.2 counts submitted jobs by listing every job of the storage, scans the storage
for jobs of other searches at every gather, and keeps every job's arguments, metadata and Job object
for the whole run. One search owns its storage here, and the master's trace keeps what matters, so
`Lean` counts, skips the scan, and forgets a job once gathered. `SimulatedEvaluator` runs W virtual
workers on a virtual clock behind the same submit/gather interface."""

from __future__ import annotations

import heapq
import time

from deephyper.evaluator import Evaluator, MaximumJobsSpawnReached
from deephyper.evaluator._job import JobStatus
from deephyper.evaluator.storage import MemoryStorage


class LeanStorage(MemoryStorage):
    """MemoryStorage that keeps a job only while it runs (arguments are not stored at all)."""

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

    def jobs_held(self, search_id) -> int:
        return len(self._data[search_id]["data"])


class Lean:
    """Mixin for an Evaluator with a LeanStorage: O(1) job counts, no scan for other searches' jobs,
    nothing kept of a gathered job."""

    _submitted_total = 0

    def _create_job(self, job_id, args, run_function, storage):
        self._submitted_total += 1
        return super()._create_job(job_id, args, run_function, storage)

    @property
    def num_jobs_submitted(self) -> int:
        return self._submitted_total - self._num_jobs_offset

    def gather_other_jobs_done(self):
        return []

    def _on_done(self, job):
        super()._on_done(job)
        self._storage.forget(job.id)
        try:
            self.jobs.remove(job)
        except ValueError:
            pass

    def held(self) -> dict:
        """What the evaluator still keeps: jobs in storage, Job objects, gathered ids."""
        return {"storage_jobs": self._storage.jobs_held(self._search_id), "jobs": len(self.jobs),
                "submitted_ids": len(self.job_id_submitted)}


def lean_mpicomm(run_function, **kwargs):
    """DeepHyper's MPICommEvaluator, lean (see `Lean`)."""
    from deephyper.evaluator._mpi_comm import MPICommEvaluator

    class LeanMPICommEvaluator(Lean, MPICommEvaluator):
        pass

    return LeanMPICommEvaluator(run_function, storage=LeanStorage(), **kwargs)


class VirtualClock:
    """Mixin for an Evaluator: W virtual workers on a virtual clock. `run_function(args, worker, now)`
    returns the job's duration in virtual seconds and its output ({"objective", "metadata"}, as a
    real worker's); a submitted job goes to the lowest-numbered idle worker, and gather returns the
    `size` jobs that end first, advancing the clock to the last of them. The job bookkeeping is
    DeepHyper's own (storage, job lists, scans), so that only `Lean` changes its cost."""

    def _start_clock(self, num_workers: int) -> None:
        self.now = 0.0
        self.worker_seconds = 0.0  # wall time spent computing what the virtual workers report
        self._idle = list(range(1, num_workers + 1))
        self._running: list[tuple[float, int, int, object]] = []
        self._order = 0

    async def execute(self, job):  # pragma: no cover - jobs never go through asyncio here
        raise NotImplementedError("a virtual-clock evaluator runs jobs in submit()")

    def clock(self, epoch: float | None = None) -> float:
        """The master's clock: virtual seconds since the search started."""
        return self.now if epoch is None else epoch

    def attach(self, master) -> None:
        """Drive `master` on virtual time (continuing from a resumed search's last time)."""
        self.now = master.clock.offset
        master.clock = self.clock

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
            t0 = time.perf_counter()
            duration, output = self.run_function(job.args, worker, self.now)
            self.worker_seconds += time.perf_counter() - t0
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
        super().__init__(run_function, num_workers=num_workers, callbacks=callbacks, storage=LeanStorage())
        self._start_clock(num_workers)


class StockSimulatedEvaluator(VirtualClock, Evaluator):
    """The same virtual workers with DeepHyper's stock bookkeeping (for bench/bench_scale.py)."""

    def __init__(self, run_function, num_workers: int, callbacks=None):
        super().__init__(run_function, num_workers=num_workers, callbacks=callbacks, storage=MemoryStorage())
        self._start_clock(num_workers)
