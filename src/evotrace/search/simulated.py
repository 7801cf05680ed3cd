"""The simulated search: the real master (Master, Algorithm 1, PrefixIndex, popularity window, journal,
trace writer) driven by `SimulatedEvaluator`, whose W virtual workers compute what a real worker would
report instead of training: quality and training time from a model (evotrace.search.models), the
tensors a donor provides named as the real space names them, a worker-local tensor cache, and
storage. Traces are written exactly like a real run's, with `evaluation: {kind: simulated, model}` in
their metadata."""

from __future__ import annotations

import logging
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Iterable

import numpy as np

from ..spaces import known_spaces, make_space
from ..trace import REPORTED, no_reads, pack_reads
from .models import Layouts, make_model

log = logging.getLogger("evotrace.search")

READ_BANDWIDTH = 2e9  # bytes/s from the shared repository (a parallel file system, per node)
WRITE_BANDWIDTH = 1e9
TENSOR_LATENCY = 2e-4  # seconds per tensor read or file written (metadata round trip)
WORKERS_PER_HOST = 4  # Polaris: 4 GPUs per node


class VirtualCache:
    """A worker's tensor cache, by ids and bytes only: LRU order, admission as TensorCache's policies
    ('none', 'lru', 'popularity': only tensors donated at least k times in the master's window)."""

    def __init__(self, capacity: int, policy: str, k: int):
        self.capacity, self.policy, self.k = capacity, policy, k
        self.entries: OrderedDict[str, int] = OrderedDict()
        self.size = 0

    def read(self, tensor_ids: list[str], sizes: list[int], popularity: dict) -> list[bool]:
        """Hit or miss of each read, in order; each miss is offered to the cache."""
        entries, capacity, policy, k = self.entries, self.capacity, self.policy, self.k
        hits = []
        for tensor_id, nbytes in zip(tensor_ids, sizes):
            if tensor_id in entries:
                entries.move_to_end(tensor_id)
                hits.append(True)
                continue
            hits.append(False)
            if policy == "none" or nbytes > capacity or (policy == "popularity" and popularity.get(tensor_id, 0) < k):
                continue
            while self.size + nbytes > capacity:
                _, freed = entries.popitem(last=False)
                self.size -= freed
            entries[tensor_id] = nbytes
            self.size += nbytes
        return hits


class SimulatedWorkers:
    """The run function of SimulatedEvaluator: what worker `worker` reports for a job started at `now`."""

    def __init__(self, spec: dict):
        from ..transfer import rank_from_bottom, should_store

        self.spec = spec
        self.space = make_space(spec["space"], **spec["space_options"])
        self.layouts = Layouts(self.space)
        self.model = make_model(spec["evaluation"]["model"], self.space, spec["seed"], self.layouts)
        self.transfer = spec["transfer"]["enabled"]
        cache = spec["transfer"]["cache"]
        self._cache_args = (int(cache["capacity_mb"] * 2**20), cache["policy"], cache["min_donations"])
        self.caches: dict[int, VirtualCache] = {}
        # the simulated repository: row j = 1 + owner of stored model j's tensors, by largest position + 1 (0: not
        # stored); one array, 4 bytes a cell, its pages touched only as models are stored
        self.owners = np.zeros((spec["search"]["candidates"], len(self.space.num_choices) + 1), dtype=np.int32)
        self._rank, self._should_store = rank_from_bottom, should_store

    def __call__(self, params: dict, worker: int, now: float) -> tuple[float, dict]:
        job_id = int(params["job_id"])
        seq = tuple(params["arch_seq"])
        names, maxpos, nbytes, total = self.layouts(seq)
        donor, lcp = params.get("donor_id"), params.get("prefix_len")
        meta = {**REPORTED, "job_id": job_id, "start_epoch": now, "worker": worker,
                "host": f"sim{(worker - 1) // WORKERS_PER_HOST}", "pid": 0, "epochs": self.spec["epochs"], "tensor_reads": no_reads()}
        inherited = np.zeros(len(names), dtype=bool)
        donor_owners = self._stored_owners(donor) if self.transfer else None
        if donor_owners is not None:
            inherited = maxpos < lcp
            index = np.flatnonzero(inherited)
            position, size = maxpos[index], nbytes[index]
            owner = donor_owners[position + 1].tolist()
            size_list = size.tolist()
            ids = [sys.intern(f"{o}/{names[i]}") for o, i in zip(owner, index.tolist())]  # popular ones recur
            cache = self.caches.get(worker)
            if cache is None:
                cache = self.caches[worker] = VirtualCache(*self._cache_args)
            hits = cache.read(ids, size_list, params.get("tensor_popularity") or {})
            meta["tensor_reads"] = pack_reads({"tensor_id": ids, "owner_id": owner, "position": position,
                                               "nbytes": size, "cache_hit": hits})
            meta.update(n_transferred_tensors=len(ids), donor_id=int(donor), prefix_len=int(lcp),
                        cache_hits=sum(hits), bytes_read=sum(b for b, hit in zip(size_list, hits) if not hit))
            meta["transfer_seconds"] = meta["bytes_read"] / READ_BANDWIDTH + TENSOR_LATENCY * (len(ids) - meta["cache_hits"])
        elif donor is not None and self.transfer:
            meta["warning"] = f"transfer skipped, trained from scratch: KeyError: donor {donor} is not stored"
        quality, seconds = self.model.outcome(job_id, seq, lcp if donor_owners is not None else None)
        meta["train_seconds"] = seconds
        duration = meta["transfer_seconds"] + seconds
        if quality is None:
            meta["error"] = "simulated failure"
        elif self.transfer and self._stores(quality, params, meta):
            written = int(nbytes[~inherited].sum())
            meta.update(stored=True, bytes_written=written)
            self._store(job_id, len(seq), donor_owners, lcp)
            duration += written / WRITE_BANDWIDTH + 2 * TENSOR_LATENCY
        meta["end_epoch"] = now + duration
        return duration, {"objective": "F_simulated" if quality is None else quality, "metadata": meta}

    def restore(self, created: dict[int, dict], done: Iterable[dict]) -> None:
        """A resumed search: the simulated repository as the journaled results left it, replayed in
        completion order. Without it every donor of the first run would count as not stored.
        The worker caches start empty, as node-local caches do after a restart."""
        for record in done:
            if record.get("stored"):
                job_id = record["job_id"]
                self._store(job_id, len(created[job_id]["arch_seq"]), self._stored_owners(record.get("donor_id")),
                            record.get("prefix_len"))

    def _stored_owners(self, donor) -> np.ndarray | None:
        """The owner of each position's tensors of stored model `donor` (None: not stored)."""
        return self.owners[donor] - 1 if donor is not None and self.owners[donor, 0] else None

    def _store(self, job_id: int, length: int, donor_owners: np.ndarray | None, lcp) -> None:
        """Store a model: its tensors belong to its donor's owners up to the prefix it inherited, to itself beyond."""
        owners = np.full(length + 1, job_id, dtype=np.int64)
        if donor_owners is not None:
            owners[: lcp + 1] = donor_owners[: lcp + 1]
        self.owners[job_id] = owners + 1

    def _stores(self, quality: float, params: dict, meta: dict) -> bool:
        """The skip-store rule exactly as worker._store applies it."""
        skip = self.spec["transfer"]["skip_store"]
        if skip.get("enabled") and params.get("population_qualities"):
            population = params["population_qualities"][-(self.spec["search"]["population"] - 1):]
            lam = self._rank(quality, population)
            return self._should_store(len(population) + 1, lam, self.spec["search"]["sample"], skip["threshold"])
        return True


def run_simulated(spec: dict, out_dir) -> int:
    """One simulated search: the same master and trace writer as `driver.run`, no MPI."""
    from .driver import run_master
    from .evaluators import SimulatedEvaluator

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    workers = spec["search"]["workers"]
    t0 = time.perf_counter()
    simulated = SimulatedWorkers(spec)
    spec = {**spec, "evaluation": {**spec["evaluation"], "parameters": simulated.model.describe()}}  # in the metadata
    evaluator = SimulatedEvaluator(simulated, num_workers=workers)
    log.info("simulated search %s on %d virtual workers, %d candidates, model %s", spec["run"], workers,
             spec["search"]["candidates"], spec["evaluation"]["model"])
    code = run_master(evaluator, spec, out, workers)
    log.info("simulated search %s took %.1f s of wall time for %.1f virtual seconds", spec["run"],
             time.perf_counter() - t0, evaluator.now)
    return code


def simulation_spec(space: str, space_options: dict, candidates: int, population: int, sample: int, workers: int,
                    seed: int, quanta: int = 1, transfer: bool = True, model: str = "synthetic",
                    run: str = "simulated", study: str = "simulated", epochs: int = 1) -> dict:
    """A run spec for `evotrace simulate`: the study config of one run, resolved like `evotrace setup`.
    `space_options` may also set what a dataset would fix (input_shape, input_blocks, num_classes);
    otherwise the space's defaults (the study's data) apply."""
    from ..data import SOURCES
    from ..runspec import build_spec
    from ..spaces import space_class

    cls = space_class(space)
    options = {k: v for k, v in space_options.items() if k in cls.options_schema["properties"]}
    from_data = {k: v for k, v in space_options.items() if k not in options}
    source = next(name for name, s in SOURCES.items() if s.kind == cls.dataset_kind)
    config = {"study": study, "datasets": {"none": {"source": source}},
              "search": {"candidates": candidates, "population": population, "sample": sample, "workers": workers,
                         "scheduling": {"quanta": quanta}},
              "training": {}, "transfer": {},
              "runs": {run: {"space": space, "space_options": options, "dataset": "none", "epochs": epochs, "seed": seed,
                             "transfer": transfer, "evaluation": {"kind": "simulated", "model": model}}},
              "analysis": {"snapshots": [min(candidates, 50)]}}
    return build_spec(config, run, "", from_data)


def _value(text: str):
    import yaml

    return yaml.safe_load(text)


def _simulate(args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for noisy in ("deephyper", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    options = {}
    for item in args.space_option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--space-option {item!r}: expected KEY=VALUE, e.g. C=8 or widths=[8,32,8]")
        options[key] = _value(value)
    try:
        spec = simulation_spec(args.space, options, args.candidates, args.population, args.sample, args.workers,
                               args.seed, args.quanta, not args.no_transfer, args.model)
        make_model(args.model, make_space(spec["space"], **spec["space_options"]), args.seed)
    except (ValueError, TypeError) as err:  # ConfigError names the option
        raise SystemExit(f"evotrace simulate: {err}") from None
    return run_simulated(spec, args.out)


def register(sub) -> None:
    p = sub.add_parser("simulate", help="run Algorithm 1's master with W virtual workers on a virtual clock")
    p.add_argument("--space", required=True, choices=known_spaces())
    p.add_argument("--space-option", action="append", default=[], metavar="KEY=VALUE",
                   help="space constructor option (repeatable), e.g. C=8, input_shape=[1,8,8], widths=[8,32,8]")
    p.add_argument("--candidates", type=int, required=True, help="N")
    p.add_argument("--population", type=int, required=True, help="p")
    p.add_argument("--sample", type=int, required=True, help="s")
    p.add_argument("--workers", type=int, required=True, help="W virtual workers")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--quanta", type=int, default=1, help="results to wait for before assigning new candidates")
    p.add_argument("--no-transfer", action="store_true", help="no donors, no tensor reads")
    p.add_argument("--model", default="synthetic", help="synthetic (default) or fitted:PATH/candidates.parquet")
    p.add_argument("--out", required=True, help="directory for candidates.parquet and tensor_reads.parquet")
    p.set_defaults(func=_simulate)
