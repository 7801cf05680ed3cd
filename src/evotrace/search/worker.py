"""The run function executed on MPI worker ranks: build the candidate, transfer from its donor, train,
store, and return the quality with everything the trace needs. It never raises: any failure becomes
an "F_..." objective (DeepHyper aborts the whole search on a worker exception) with its error text."""

from __future__ import annotations

import os
import socket
import time
import traceback

import numpy as np

_STATE: dict = {}


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
    import torch
    from mpi4py import MPI

    from ..data import load
    from ..runspec import load_spec
    from ..spaces import make_space
    from .train import pick_device

    spec = load_spec(spec_path)
    torch.set_num_threads(spec["search"].get("torch_threads", 1))
    device = pick_device(_local_rank())
    state = {"spec_path": spec_path, "spec": spec, "device": device, "rank": MPI.COMM_WORLD.Get_rank(),
             "host": socket.gethostname(), "pid": os.getpid()}
    if spec["evaluation"]["kind"] == "train":
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
        state["cache"] = TensorCache(
            directory, int(cache_cfg.get("capacity_mb", 64) * 2**20), cache_cfg.get("policy", "popularity"),
            min_donations=cache_cfg.get("min_donations", 5), window=cache_cfg.get("window", spec["search"]["population"]),
        )
    _STATE.clear()
    _STATE.update(state)
    return _STATE


def _injected_failure(spec: dict, job_id: int) -> str | None:
    """Test hook (spec["inject_failures"]): fail a seeded fraction of jobs, or make given jobs diverge."""
    inject = spec.get("inject_failures")
    if not inject:
        return None
    if job_id in inject.get("nan_jobs", []):
        return "nan"
    rng = np.random.default_rng([spec["seed"], job_id, 7])
    return "raise" if rng.random() < inject.get("rate", 0.0) else None


def evaluate(job, spec_path: str, cache_dir: str | None = None, repository: str | None = None) -> dict:
    start = time.time()
    params = job.parameters
    meta = {"job_id": params["job_id"], "start_epoch": start, "worker": -1, "host": "", "pid": os.getpid(),
            "error": None, "epochs": 0, "train_seconds": None, "tensor_reads": [], "bytes_read": 0,
            "bytes_written": 0, "stored": False, "transfer_seconds": 0.0, "cache_hits": 0,
            "n_transferred_tensors": 0}
    try:
        state = worker_state(spec_path, cache_dir, repository)
        meta.update(worker=state["rank"], host=state["host"], pid=state["pid"])
        quality = _run(state, params, meta)
        objective = quality
    except BaseException as err:  # noqa: BLE001 - a worker must report, never abort the search
        if isinstance(err, (KeyboardInterrupt, SystemExit)):
            raise
        meta["error"] = f"{type(err).__name__}: {err}"
        meta["traceback"] = traceback.format_exc(limit=6)
        objective = "F_" + type(err).__name__
        _release_device_memory()
    meta["end_epoch"] = time.time()
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
    inherited = {}
    if spec["transfer"]["enabled"] and params.get("donor_id") is not None:
        inherited = _transfer(state, model, seq, params, meta)
    if injected == "nan":
        with torch.no_grad():
            next(p for p in model.parameters() if p.requires_grad).fill_(float("nan"))
    result = train_candidate(
        model, state["data"], spec["epochs"], spec["training"], state["device"], seed,
        fine_tune_epochs=spec["transfer"]["fine_tune_epochs"] if inherited else 0,
    )
    meta.update(epochs=result.epochs, train_seconds=result.train_seconds)
    if spec["transfer"]["enabled"]:
        _store(state, model, seq, result.quality, params, inherited, meta)
    return result.quality


def _transfer(state, model, seq, params, meta) -> dict:
    """Copy and freeze the donor's prefix tensors; a corrupted donor tensor means training from scratch."""
    from .. import transfer
    from ..repository import CorruptTensor

    repo = state["repository"]
    t0 = time.perf_counter()
    try:
        manifest = repo.get_manifest(params["donor_id"])
        result = transfer.apply(
            model, state["space"], seq, manifest, params["prefix_len"], repo, cache=state.get("cache"),
            fine_tune=state["spec"]["transfer"]["fine_tune_epochs"] > 0,
        )
    except (CorruptTensor, FileNotFoundError, KeyError) as err:
        meta["error"] = f"transfer skipped, trained from scratch: {type(err).__name__}: {err}"
        meta["transfer_seconds"] = time.perf_counter() - t0
        return {}
    now = time.time() - meta["start_epoch"]
    meta["tensor_reads"] = [dict(r, offset=now) for r in result.reads]
    meta.update(
        n_transferred_tensors=len(result.transferred), bytes_read=result.bytes_read,
        cache_hits=result.cache_hits, transfer_seconds=time.perf_counter() - t0,
    )
    return result.inherited


def _store(state, model, seq, quality, params, inherited, meta) -> None:
    from ..transfer import should_store

    skip = state["spec"]["transfer"]["skip_store"]
    if skip.get("enabled"):
        snapshot = params.get("population_qualities") or []
        size = min(len(snapshot) + 1, state["spec"]["search"]["population"])
        lam = 1 + sum(q < quality for q in snapshot[-(size - 1):] if size > 1) if snapshot else 1
        meta["store_rank"] = lam
        if snapshot and not should_store(size, lam, state["spec"]["search"]["sample"], skip["threshold"]):
            return
    written = state["repository"].put(params["job_id"], list(seq), quality, model.state_dict(), inherited)
    meta.update(stored=True, bytes_written=int(written))
