"""Model repository: round trip, deduplication of inherited tensors, crash atomicity, corruption
detection and concurrent writers from real MPI ranks."""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from evotrace.repository import CorruptTensor, ModelExists, ModelRepository

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _state(seed: int, sizes=(("a", (4, 3)), ("b", (7,)), ("c", (2, 2, 2)))) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {name: torch.randn(shape, generator=g) for name, shape in sizes}
    out["steps"] = torch.tensor(seed, dtype=torch.int64)
    return out


def _header_len(path) -> int:
    with open(path, "rb") as fh:
        return struct.unpack("<Q", fh.read(8))[0]


@pytest.mark.parametrize("algorithm", ["xxh3_128", "sha256", "crc32", "blake2b"])
def test_round_trip_bit_exact(tmp_path, algorithm):
    repo = ModelRepository(tmp_path / "repo", hash_algorithm=algorithm)
    sd = _state(1)
    sd["half"] = torch.randn(3, 5).to(torch.bfloat16)
    sd["flag"] = torch.tensor([True, False])
    res = repo.put(7, (1, 2, 3), 0.75, sd, extra={"worker": 2})
    assert res.tensors_written == len(sd) and res.tensors_inherited == 0
    assert res.bytes_written == (tmp_path / "repo" / res.file).stat().st_size + (
        tmp_path / "repo" / "models" / "7.json").stat().st_size
    from safetensors.torch import load_file  # the standard loader validates the file layout
    standard = load_file(str(tmp_path / "repo" / res.file))
    assert set(standard) == set(sd) and all(torch.equal(standard[n], sd[n]) for n in sd)
    fresh = ModelRepository(tmp_path / "repo")
    assert fresh.list_models() == [7]
    record = fresh.get(7)
    assert record.arch_seq == (1, 2, 3) and record.quality == 0.75 and record.extra == {"worker": 2}
    entry = record.manifest["a"]
    assert entry["tensor_id"] == "7/a" and entry["owner"] == 7 and entry["nbytes"] == 48
    assert entry["hash"].startswith(algorithm + ":")
    loaded = fresh.load(7)
    for name, tensor in sd.items():
        assert loaded[name].dtype == tensor.dtype
        assert torch.equal(loaded[name].view(-1).view(torch.uint8), tensor.view(-1).view(torch.uint8))
    assert fresh.bytes_read == sum(e["nbytes"] for e in record.manifest.values())
    with pytest.raises(ModelExists):
        repo.put(7, (1, 2, 3), 0.5, sd)


def test_inherited_tensors_are_stored_once_and_keep_their_id(tmp_path):
    repo = ModelRepository(tmp_path)
    parent = _state(1)
    repo.put(0, (1, 1), 0.5, parent)
    child = dict(_state(2), a=parent["a"].clone(), b=parent["b"].clone())
    res = repo.put(1, (1, 2), 0.6, child, inherited={n: repo.get_manifest(0)[n] for n in ("a", "b")})
    assert res.tensors_written == 2 and res.tensors_inherited == 2 and res.rewritten == []
    grandchild = dict(_state(3), a=child["a"].clone(), c=child["c"].clone())
    m1 = repo.get_manifest(1)
    repo.put(2, (1, 2, 3), 0.7, grandchild, inherited={"a": m1["a"], "c": m1["c"]})
    m2 = repo.get_manifest(2)
    assert m2["a"]["tensor_id"] == "0/a" and m2["a"]["owner"] == 0 and m2["a"]["file"] == "tensors/0.safetensors"
    assert m2["c"]["tensor_id"] == "1/c" and m2["c"]["owner"] == 1
    from safetensors import safe_open
    with safe_open(str(tmp_path / "tensors/1.safetensors"), framework="pt") as fh:
        assert sorted(fh.keys()) == ["c", "steps"]
    with safe_open(str(tmp_path / "tensors/2.safetensors"), framework="pt") as fh:
        assert sorted(fh.keys()) == ["b", "steps"]
    assert torch.equal(repo.load(2)["a"], parent["a"])
    assert repo.refcounts() == {"tensors/0.safetensors": 3, "tensors/1.safetensors": 2, "tensors/2.safetensors": 1}
    # a tensor that changed although declared inherited is written anyway and reported
    changed = dict(_state(4), a=parent["a"] + 1)
    res = repo.put(3, (1, 3), 0.1, changed, inherited={"a": repo.get_manifest(0)["a"]})
    assert res.rewritten == ["a"] and repo.get_manifest(3)["a"]["owner"] == 3
    # a full clone writes no tensor file
    res = repo.put(4, (1, 1), 0.5, parent, inherited=repo.get_manifest(0))
    assert res.file is None and res.tensors_written == 0
    assert not (tmp_path / "tensors/4.safetensors").exists()
    # deleting the owner keeps its file while descendants refer to it
    assert repo.delete(0) == []
    assert (tmp_path / "tensors/0.safetensors").exists() and repo.list_models() == [1, 2, 3, 4]
    for model_id in (2, 4, 1):
        repo.delete(model_id)
    assert not (tmp_path / "tensors/0.safetensors").exists()


def test_corrupted_data_and_header_are_detected(tmp_path):
    repo = ModelRepository(tmp_path)
    sd = _state(5)
    repo.put(3, (0,), 0.1, sd)
    path = tmp_path / "tensors/3.safetensors"
    pristine = path.read_bytes()
    entry = repo.get_manifest(3)["b"]
    with open(path, "rb") as fh:
        fh.seek(8)
        header = json.loads(fh.read(_header_len(path)))
    offset = 8 + _header_len(path) + header["b"]["data_offsets"][0] + 5
    blob = bytearray(pristine)
    blob[offset] ^= 0x40
    path.write_bytes(bytes(blob))
    with pytest.raises(CorruptTensor) as err:
        ModelRepository(tmp_path).read_tensor(entry)
    assert err.value.model_id == 3 and err.value.name == "b" and str(path) in str(err.value)
    assert torch.equal(ModelRepository(tmp_path).read_tensor(repo.get_manifest(3)["a"]), sd["a"])  # others fine
    blob = bytearray(pristine)
    blob[10:14] = b"\xff\x00\xfe\x01"
    path.write_bytes(bytes(blob))
    with pytest.raises(CorruptTensor):
        ModelRepository(tmp_path).load(3)
    path.write_bytes(pristine[: len(pristine) // 2])
    with pytest.raises(CorruptTensor):
        ModelRepository(tmp_path).load(3)
    path.unlink()
    with pytest.raises(CorruptTensor):
        ModelRepository(tmp_path).load(3)


def test_default_xxh3_detects_a_byte_flip_and_sha256_entries_still_verify(tmp_path):
    from evotrace.repository import DEFAULT_HASH, tensor_hash
    assert DEFAULT_HASH == "xxh3_128"
    old = ModelRepository(tmp_path, hash_algorithm="sha256")  # a model written before the default changed
    old_sd = _state(6)
    old.put(1, (0,), 0.1, old_sd)
    repo = ModelRepository(tmp_path)
    assert repo.hash_algorithm == "xxh3_128"
    child = dict(_state(7), a=old_sd["a"].clone())
    res = repo.put(2, (0, 1), 0.2, child, inherited={"a": old.get_manifest(1)["a"]})
    assert res.rewritten == [] and res.tensors_inherited == 1  # the sha256 entry verified on put
    manifest = ModelRepository(tmp_path).get_manifest(2)
    assert manifest["a"]["hash"].startswith("sha256:") and manifest["a"]["owner"] == 1
    for name in ("b", "c", "steps"):
        assert manifest[name]["hash"] == tensor_hash(child[name])
        assert manifest[name]["hash"].startswith("xxh3_128:") and len(manifest[name]["hash"]) == 9 + 32
    loaded = ModelRepository(tmp_path).load(2)  # mixed sha256 + xxh3_128 entries verify
    assert all(torch.equal(loaded[n], child[n]) for n in child)
    assert all(torch.equal(t, old_sd[n]) for n, t in ModelRepository(tmp_path).load(1).items())

    path = tmp_path / "tensors/2.safetensors"
    with open(path, "rb") as fh:
        fh.seek(8)
        header = json.loads(fh.read(_header_len(path)))
    blob = bytearray(path.read_bytes())
    blob[8 + _header_len(path) + header["c"]["data_offsets"][0] + 3] ^= 0x01  # one bit of one byte
    path.write_bytes(bytes(blob))
    with pytest.raises(CorruptTensor) as err:
        ModelRepository(tmp_path).read_tensor(manifest["c"])
    assert err.value.model_id == 2 and err.value.name == "c" and "hash mismatch" in err.value.reason
    assert torch.equal(ModelRepository(tmp_path).read_tensor(manifest["a"]), old_sd["a"])  # sha256 entry intact


_WRITER = textwrap.dedent(
    """
    import os, sys, time, torch
    sys.path.insert(0, {src!r})
    from evotrace.repository import ModelRepository
    root, stage, mode, marker = sys.argv[1:5]
    repo = ModelRepository(root)
    def hook(name):
        if name != stage:
            return
        if mode == "exit":
            os._exit(3)
        open(marker, "w").close()
        time.sleep(60)
    repo._crash_hook = hook
    big = {{f"w{{i}}": torch.full((1 << 20,), float(i)) for i in range(12)}}  # 48 MB
    repo.put(99, (1, 2, 3), 0.9, big)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize(
    "stage,mode",
    [("half_written", "exit"), ("tensors_written", "exit"), ("tensors_published", "exit"), ("half_written", "kill")],
)
def test_write_killed_midway_leaves_no_visible_model(tmp_path, stage, mode):
    root = tmp_path / "repo"
    repo = ModelRepository(root)
    repo.put(1, (0,), 0.5, _state(1))
    script = tmp_path / "writer.py"
    script.write_text(_WRITER.format(src=SRC))
    marker = tmp_path / "marker"
    proc = subprocess.Popen([sys.executable, str(script), str(root), stage, mode, str(marker)])
    if mode == "kill":
        deadline = time.time() + 60
        while not marker.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        assert marker.exists(), "writer never reached the hook"
        (tmp,) = [p for p in (root / "tensors").iterdir() if p.name.startswith(".tmp-")]
        assert 0 < tmp.stat().st_size < 40 << 20  # killed with half of the 48 MB written
        os.kill(proc.pid, signal.SIGKILL)
    rc = proc.wait(timeout=60)
    assert rc != 0
    after = ModelRepository(root)
    assert after.list_models() == [1] and 99 not in after
    assert torch.equal(after.load(1)["a"], _state(1)["a"])
    removed = after.clean(max_age_s=0)
    assert removed, "the crashed writer left nothing to clean"
    assert sorted(p.name for p in (root / "tensors").iterdir()) == ["1.safetensors"]
    after.put(99, (1, 2, 3), 0.9, _state(9))  # the id is free again
    assert after.list_models() == [1, 99]


_MPI_WRITER = textwrap.dedent(
    """
    import sys, torch
    sys.path.insert(0, {src!r})
    from mpi4py import MPI
    from evotrace.repository import ModelRepository
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    repo = ModelRepository(sys.argv[1])
    def state(model_id):
        g = torch.Generator().manual_seed(model_id)
        return {{f"layer{{i}}.weight": torch.randn(64, 257, generator=g) for i in range(6)}}
    previous = None
    for i in range(6):
        model_id = 1000 * rank + i
        sd = state(model_id)
        inherited = {{}}
        if previous is not None:
            donor = repo.get_manifest(previous)
            for name in ("layer0.weight", "layer1.weight"):
                sd[name] = repo.read_tensor(donor[name])
                inherited[name] = donor[name]
        repo.put(model_id, (rank, i), float(i), sd, inherited=inherited)
        previous = model_id
        comm.Barrier() if i == 2 else None
    comm.Barrier()
    ids = repo.list_models()
    assert len(ids) == 6 * size, ids
    for model_id in ids:
        repo.verify(model_id)
        m = repo.get_manifest(model_id)
        assert m["layer0.weight"]["owner"] == 1000 * (model_id // 1000), m["layer0.weight"]
    print(f"rank {{rank}} verified {{len(ids)}} models", flush=True)
    """
)


@pytest.mark.mpi
@pytest.mark.skipif(shutil.which("mpiexec") is None, reason="no mpiexec")
def test_concurrent_writers_from_mpi_ranks(tmp_path):
    script = tmp_path / "mpi_writer.py"
    script.write_text(_MPI_WRITER.format(src=SRC))
    root = tmp_path / "repo"
    proc = subprocess.run(
        ["mpiexec", "-n", "3", sys.executable, str(script), str(root)],
        capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("verified 18 models") == 3, proc.stdout
    repo = ModelRepository(root)
    assert len(repo.list_models()) == 18
    for model_id in repo.list_models():
        repo.verify(model_id)
    files = sorted(p.name for p in (root / "tensors").iterdir())
    assert len(files) == 18 and not any(f.startswith(".tmp-") for f in files)
    assert not any(p.name.startswith(".tmp-") for p in (root / "models").iterdir())
    # each non-first model stored only its 4 own tensors
    own = [len(repo.get(m).manifest) - sum(e["owner"] != m for e in repo.get(m).manifest.values()) for m in repo.list_models()]
    assert sorted(own) == [4] * 15 + [6] * 3


class OnAccelerator(torch.Tensor):
    """Stands in for a CUDA tensor on a machine without a GPU: like one, it refuses `.numpy()`, and only
    `.cpu()` / `.to("cpu")` give a host copy back. Anything that serializes it without that copy fails."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.numpy:
            raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the "
                            "tensor to host memory first.")
        to_cpu = func is torch.Tensor.to and str(args[1] if len(args) > 1 else kwargs.get("device")) == "cpu"
        if func is torch.Tensor.cpu or to_cpu:
            with torch._C.DisableTorchFunctionSubclass():
                return func(*args, **kwargs).clone()
        return super().__torch_function__(func, types, args, kwargs)


def test_put_copies_device_tensors_to_the_cpu(tmp_path):
    """train.py leaves the model on its GPU: put() gets device tensors, for its own and inherited ones."""
    repo = ModelRepository(tmp_path)
    parent = _state(1)
    on_device = {n: t.as_subclass(OnAccelerator) for n, t in parent.items()}
    with pytest.raises(TypeError, match="numpy"):
        on_device["a"].reshape(-1).view(torch.uint8).numpy()  # the proxy refuses as CUDA does
    repo.put(0, (1,), 0.5, on_device)
    child = {n: t.as_subclass(OnAccelerator) for n, t in dict(_state(2), a=parent["a"].clone()).items()}
    res = repo.put(1, (1, 2), 0.6, child, inherited={"a": repo.get_manifest(0)["a"]})
    assert res.tensors_inherited == 1 and res.rewritten == []
    loaded = ModelRepository(tmp_path).load(1)
    for name, tensor in dict(_state(2), a=parent["a"]).items():
        assert type(loaded[name]) is torch.Tensor
        assert torch.equal(loaded[name].reshape(-1).view(torch.uint8), tensor.reshape(-1).view(torch.uint8))


@pytest.mark.parametrize("bad", ["../victim.bin", "tensors/../../victim.bin", "/tmp/x.safetensors", "tensors/1.json"])
def test_tampered_manifest_cannot_reach_outside_the_repository(tmp_path, bad):
    root = tmp_path / "repo"
    repo = ModelRepository(root)
    repo.put(0, (1,), 0.5, _state(1))
    victim = tmp_path / "victim.bin"
    victim.write_bytes(b"precious")
    meta_path = root / "models/0.json"
    meta = json.loads(meta_path.read_text())
    meta["manifest"]["a"]["file"] = bad
    meta_path.write_text(json.dumps(meta))
    fresh = ModelRepository(root)
    with pytest.raises(CorruptTensor, match="not one of the repository's tensor files"):
        fresh.load(0)
    with pytest.raises(CorruptTensor, match="not one of the repository's tensor files"):
        fresh.delete(0)
    assert victim.read_bytes() == b"precious" and meta_path.exists() and (root / "tensors/0.safetensors").exists()


def test_discard_removes_only_the_model_and_scans_nothing(tmp_path, monkeypatch):
    """A resumed search's re-submitted candidate replaces its unannounced model: at W=1000 and N=100k a
    scan of every manifest per call would be ~1e8 metadata reads."""
    repo = ModelRepository(tmp_path / "repo", fsync=False)
    donor = repo.put(1, [0, 1], 0.5, _state(1))
    child_state = _state(2)
    child_state["a"] = repo.load(1)["a"]
    repo.put(2, [0, 2], 0.6, child_state, {"a": repo.get_manifest(1)["a"]})
    monkeypatch.setattr(repo, "list_models", lambda: pytest.fail("discard scanned the repository"))
    removed = repo.discard(2)
    assert removed == ["models/2.json", "tensors/2.safetensors"]
    assert 2 not in repo and (tmp_path / "repo" / donor.file).exists()
    assert repo.load(1)["a"].equal(_state(1)["a"])


def test_manifest_cache_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(ModelRepository, "RECORDS_CACHED", 3)
    repo = ModelRepository(tmp_path / "repo", fsync=False)
    for i in range(6):
        repo.put(i, [i], 0.1, _state(i))
    for i in range(6):
        repo.get(i)
    assert list(repo._records) == [3, 4, 5]
