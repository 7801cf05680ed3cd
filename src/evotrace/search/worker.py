"""The run function executed on MPI worker ranks: build the candidate, transfer from its donor, train,
store, and return the quality with everything the trace needs. It never raises: any failure becomes
an "F_..." objective (DeepHyper aborts the whole search on a worker exception) with its error text."""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback

import numpy as np

from ..durable import warn_once
from ..trace import REPORTED, no_reads, pack_reads

log = logging.getLogger("evotrace.worker")
_STATE: dict = {}


class Assignment:
    """A candidate as a worker rank receives it: the job's parameters, all that `evaluate` reads of a job
    (DeepHyper's RunningJob has the same attribute). Defined here so that unpickling it imports no DeepHyper."""

    __slots__ = ("parameters",)

    def __init__(self, parameters: dict):
        self.parameters = parameters


def _local_rank() -> int:
    for var in ("PMI_LOCAL_RANK", "PALS_LOCAL_RANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"):
        if var in os.environ:
            return int(os.environ[var])
    return 0


def worker_state(spec_path: str, cache_dir: str | None, repository: str | None) -> dict:
    """Per-process state, built on the first job: the dataset on the device, the space, the
    repository and the worker-local cache."""
    if _STATE.get("spec_path") == spec_path:
        return _STATE
    from mpi4py import MPI

    from ..runspec import load_spec

    spec = load_spec(spec_path)
    rank = MPI.COMM_WORLD.Get_rank()
    state = {"spec_path": spec_path, "spec": spec, "rank": rank, "host": socket.gethostname(), "pid": os.getpid(),
             "clock_skew": float(spec.get("inject_clock_skew", {}).get(str(rank), 0.0))}
    if spec["evaluation"]["kind"] == "train":
        import torch

        from ..data import load
        from ..spaces import make_space
        from .train import pick_device

        torch.set_num_threads(spec["search"]["torch_threads"])
        device = state["device"] = pick_device(_local_rank())
        ds = load(spec["data"])
        state["data"] = {
            "x_train": torch.as_tensor(ds.x_train, device=device),
            "y_train": torch.as_tensor(ds.y_train, device=device),
            "x_val": torch.as_tensor(ds.x_val, device=device),
            "y_val": torch.as_tensor(ds.y_val, device=device),
        }
        state["space"] = make_space(spec["space"], **spec["space_options"])
    if spec["transfer"]["enabled"]:
        from ..cache import TensorCache
        from ..repository import ModelRepository

        state["repository"] = ModelRepository(repository)
        cache_cfg = spec["transfer"]["cache"]
        directory = os.path.join(cache_dir or os.environ.get("TMPDIR", "/tmp"), f"evotrace-cache-{spec['study']}-{spec['run']}-r{state['rank']}")
        try:
            state["cache"] = TensorCache(
                directory, int(cache_cfg["capacity_mb"] * 2**20), cache_cfg["policy"],
                k=cache_cfg["min_donations"], window=cache_cfg["window"],
            )
        except OSError as err:  # the cache is an optimisation: go on without it
            warn_once(log, ("cache", err.errno), "rank %d: no tensor cache in %s (%s)", rank, directory, err)
    _STATE.clear()
    _STATE.update(state)
    return _STATE


def prepare() -> None:
    """Import what training needs (torch, safetensors, the transfer code) before the first candidate
    arrives, while the master is still starting. Imports only: the state itself (cache directory,
    repository) waits for a candidate, which a refused master never sends."""
    from .. import cache, data, repository, transfer  # noqa: F401
    from . import train  # noqa: F401


def release_state() -> None:
    """At the end of the worker loop: remove the worker's tensor cache from node-local scratch."""
    cache = _STATE.get("cache")
    if cache is not None:
        cache.close()
    _STATE.clear()


def _injected_failure(spec: dict, job_id: int) -> str | None:
    """Test hook (spec["inject_failures"]): fail a seeded fraction of jobs, make given jobs diverge, or give
    them a model too large for any device (bench/gpu_check.py)."""
    inject = spec.get("inject_failures")
    if not inject:
        return None
    if job_id in inject.get("nan_jobs", []):
        return "nan"
    if job_id in inject.get("oversized_jobs", []):
        return "oversized"
    rng = np.random.default_rng([spec["seed"], job_id, 7])
    return "raise" if rng.random() < inject.get("rate", 0.0) else None


def evaluate(job, spec_path: str, cache_dir: str | None = None, repository: str | None = None) -> dict:
    start = time.time()
    params = job.parameters
    meta = {**REPORTED, "job_id": params["job_id"], "start_epoch": start, "pid": os.getpid(), "tensor_reads": no_reads()}
    try:
        state = worker_state(spec_path, cache_dir, repository)
        meta.update(worker=state["rank"], host=state["host"], pid=state["pid"], start_epoch=start + state["clock_skew"])
        quality = _run(state, params, meta)
        objective = quality
    except BaseException as err:  # noqa: BLE001 - a worker must report, never abort the search
        if isinstance(err, (KeyboardInterrupt, SystemExit)):
            raise
        meta["error"] = f"{type(err).__name__}: {err}"
        meta["traceback"] = traceback.format_exc(limit=6)
        objective = "F_" + type(err).__name__
        _release_device_memory()
    meta["end_epoch"] = time.time() + _STATE.get("clock_skew", 0.0)
    return {"objective": objective, "metadata": meta}


def _release_device_memory():
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001
        pass


def _run(state: dict, params: dict, meta: dict) -> float:
    spec = state["spec"]
    job_id = params["job_id"]
    injected = _injected_failure(spec, job_id)
    if injected == "raise":
        raise RuntimeError(f"injected failure in job {job_id}")
    if spec["evaluation"]["kind"] == "sleep":
        time.sleep(spec["evaluation"]["seconds"])
        return float(np.random.default_rng([spec["seed"], job_id]).random())

    import torch

    from .train import seed_for, train_candidate

    seq = tuple(params["arch_seq"])
    seed = seed_for(spec["seed"], job_id)
    torch.manual_seed(seed)
    space = state["space"]
    model = space.build(seq)
    transferred = None
    if spec["transfer"]["enabled"] and params.get("donor_id") is not None:
        transferred = _transfer(state, model, seq, params, meta)
    if injected == "oversized":  # 1 TiB of buffer: the device's allocator must refuse it
        model.register_buffer("ballast", torch.empty(2**40, dtype=torch.uint8, device=state["device"]))
    if injected == "nan":
        with torch.no_grad():
            next(p for p in model.parameters() if p.requires_grad).fill_(float("nan"))
    result = train_candidate(model, state["data"], spec["epochs"], spec["training"], state["device"], seed)
    epochs, seconds = result.epochs, result.train_seconds
    inherited = transferred.inherited if transferred is not None else {}
    fine_tune = spec["transfer"]["fine_tune_epochs"]
    if transferred is not None and fine_tune:  # only a child that inherited tensors has any to unfreeze
        for hook in transferred.bn_hooks:
            hook.remove()
        for p in model.parameters():
            p.requires_grad_(True)
        result = train_candidate(model, state["data"], fine_tune, spec["training"], state["device"], seed + 1)
        epochs, seconds, inherited = epochs + result.epochs, seconds + result.train_seconds, {}
    meta.update(epochs=epochs, train_seconds=seconds)
    if spec["transfer"]["enabled"]:
        _store(state, model, seq, result.quality, params, inherited, meta)
    return result.quality


def _transfer(state, model, seq, params, meta):
    """Copy and freeze the donor's prefix tensors; a corrupted donor tensor means training from scratch
    (returns None)."""
    from .. import transfer
    from ..repository import CorruptTensor

    repo, cache = state["repository"], state.get("cache")
    if cache is not None and params.get("tensor_popularity") is not None:
        cache.set_popularity(params["tensor_popularity"])
    t0 = time.perf_counter()
    try:
        result = transfer.apply(
            model, state["space"], seq, repo.get_manifest(params["donor_id"]), params["prefix_len"], repo,
            cache=cache, positions=state["space"].tensor_positions(seq, model), donor_id=params["donor_id"],
        )
    except (CorruptTensor, FileNotFoundError, KeyError) as err:
        meta["warning"] = f"transfer skipped, trained from scratch: {type(err).__name__}: {err}"
        meta["transfer_seconds"] = time.perf_counter() - t0
        return None
    meta["tensor_reads"] = pack_reads(result.read_columns())
    meta.update(result.summary())
    if not result.transferred:  # no tensor of the donor fits the child: no transfer happened
        return None
    meta.update(donor_id=int(params["donor_id"]), prefix_len=int(params["prefix_len"]))  # a transfer happened
    return result


def _store(state, model, seq, quality, params, inherited, meta) -> None:
    """Store the trained model unless the skip-store rule (Section V-C) says it will (almost) never be a
    parent; such a model could still have been a donor, which skipping gives up.
    The worker ranks the candidate against the population the master sent with the job: its rank at
    insertion is only known later, on the master."""
    from ..repository import ModelExists
    from ..transfer import rank_from_bottom, should_store

    spec = state["spec"]
    skip = spec["transfer"]["skip_store"]
    if skip["enabled"] and params.get("population_qualities"):
        population = params["population_qualities"][-(spec["search"]["population"] - 1):]
        lam = rank_from_bottom(quality, population)
        meta["store_rank"] = lam
        if not should_store(len(population) + 1, lam, spec["search"]["sample"], skip["threshold"]):
            return
    repo = state["repository"]
    try:
        try:
            put = repo.put(params["job_id"], list(seq), quality, model.state_dict(), inherited)
        except ModelExists:
            # a re-submitted candidate of a resumed search: the earlier attempt's model was never
            # announced to the master, so no other model refers to it
            repo.discard(params["job_id"])
            put = repo.put(params["job_id"], list(seq), quality, model.state_dict(), inherited)
    except OSError as err:  # disk full, quota: the candidate trained fine, it just cannot be a donor
        meta["warning"] = "; ".join(filter(None, (meta.get("warning"), f"not stored: {type(err).__name__}: {err}")))
        warn_once(log, ("store", err.errno), "rank %d: cannot store models in %s (%s); candidates keep their "
                  "quality but cannot become donors", state["rank"], repo.root, err)
        return
    meta.update(stored=True, bytes_written=int(put.bytes_written))
