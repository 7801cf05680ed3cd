"""Repository write+read throughput against raw files holding the same bytes (target >= 0.8x).

Each model is a state_dict of a few MB. The repository path hashes every tensor on write and verifies
it on read, writes safetensors + metadata JSON through temp-file/fsync/rename. "raw" writes the same
bytes to the same number of files per model (the tensor bytes, and metadata JSON of the repository's
size), each through temp file + fsync + rename (so durability is equal), and reads both back whole
with one copy each. "raw 1file" is the older baseline (tensor bytes only, one file per model); ratios
against it are printed too. Reads come from the page cache on all sides. "repo <algorithm>" hashes with
that algorithm (xxh3_128 is the repository's default); "repo noverify" writes with the default hash and
reads without checking hashes: the I/O path alone. "repo library" is the default repository with the
safetensors library's writer (save_file, then a hashing pass and an fsync) in place of its own one-pass
writer: the measurement behind repository.write_safetensors' choice."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

import evotrace.repository as repository
from evotrace.durable import atomic_write, fsync_path
from evotrace.repository import DEFAULT_HASH, HASHES, ModelRepository, hash_many


def models(n, mb, tensors, seed=0):
    g = torch.Generator().manual_seed(seed)
    per = int(mb * 2**20 / 4 / tensors)
    return [{f"layer{i}.weight": torch.randn(per, generator=g) for i in range(tensors)} for _ in range(n)]


def _meta_blob(i, sd):
    """Metadata of the size the repository writes per model (a manifest entry per tensor)."""
    manifest = {n: {"tensor_id": f"{i}/{n}", "owner": i, "file": f"tensors/{i}.safetensors", "key": n,
                    "nbytes": t.numel() * t.element_size(), "dtype": "float32", "shape": list(t.shape),
                    "hash": "xxh3_128:" + "0" * 32} for n, t in sd.items()}
    return json.dumps({"format": 1, "model_id": i, "arch_seq": [i], "quality": 0.5, "file": f"tensors/{i}.safetensors",
                       "created": time.time(), "extra": {}, "manifest": manifest}).encode()


def _durable_write(directory: Path, name: str, chunks, fsync: bool):
    with atomic_write(directory / name) as tmp, open(tmp, "wb") as fh:
        for chunk in chunks:
            fh.write(chunk)
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())


def _read_whole(path: Path) -> torch.Tensor:
    with open(path, "rb", buffering=0) as fh:
        buf = torch.empty(os.fstat(fh.fileno()).st_size, dtype=torch.uint8)
        fh.readinto(memoryview(buf.numpy()))  # one copy, page cache -> tensor
    return buf


def raw(root: Path, states, fsync: bool, files: int = 2):
    """Plain files holding the same bytes: per model the tensor bytes (and, with files=2, metadata JSON
    of the repository's size in a second file), each written to a temporary name, fsynced and renamed,
    one directory fsync per directory at the end; read back whole into tensors with one copy."""
    dirs = [root / "tensors", root / "models"][:files]
    for d in dirs:
        d.mkdir(parents=True)
    t0 = time.perf_counter()
    for i, sd in enumerate(states):
        _durable_write(dirs[0], f"{i}.bin", [memoryview(t.view(torch.uint8).numpy()) for t in sd.values()], fsync)
        if files == 2:
            _durable_write(dirs[1], f"{i}.json", [_meta_blob(i, sd)], fsync)
    if fsync:
        for d in dirs:
            fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
            os.fsync(fd)
            os.close(fd)
    write = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(len(states)):
        if files == 2:
            json.loads(_read_whole(dirs[1] / f"{i}.json").numpy().tobytes())
        _read_whole(dirs[0] / f"{i}.bin").view(torch.float32)
    read = time.perf_counter() - t0
    return write, read


def library_writer(path, tensors, metadata, algorithm, fsync, progress=None, before_sync=None, after_open=None):
    """write_safetensors' contract through the safetensors library: its writer, then a hashing pass."""
    from safetensors.torch import save_file

    save_file(dict(tensors), str(path), metadata=dict(metadata))
    if after_open is not None:
        after_open()
    hashes = dict(zip(tensors, hash_many(list(tensors.values()), [algorithm] * len(tensors), 1)))
    if before_sync is not None:
        before_sync(hashes)
    if fsync:
        fsync_path(path)
    return hashes


def repo(root: Path, states, fsync: bool, algorithm: str, threads: int | None, verify: bool = True,
         writer=None):
    r = ModelRepository(root, hash_algorithm=algorithm, fsync=fsync, hash_threads=threads)
    own, repository.write_safetensors = repository.write_safetensors, writer or repository.write_safetensors
    try:
        t0 = time.perf_counter()
        for i, sd in enumerate(states):
            r.put(i, (i,), 0.5, sd)
        write = time.perf_counter() - t0
    finally:
        repository.write_safetensors = own
    r = ModelRepository(root, hash_algorithm=algorithm, hash_threads=threads)
    t0 = time.perf_counter()
    for i in range(len(states)):
        r.load(i, verify=verify)
    read = time.perf_counter() - t0
    return write, read


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", type=int, default=200)
    ap.add_argument("--mb", type=float, default=4.0)
    ap.add_argument("--tensors", type=int, default=8)
    ap.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--hash-threads", type=int, default=None, help="default: the repository's (up to 4 cores)")
    ap.add_argument("--fsync", choices=["both", "on", "off"], default="both")
    ap.add_argument("--algorithms", nargs="+", choices=HASHES, default=list(HASHES),
                    help="hashes to compare (default: all, the repository's default first)")
    args = ap.parse_args()
    states = models(args.models, args.mb, args.tensors)
    total = sum(t.numel() * 4 for sd in states for t in sd.values()) / 2**20
    base = Path(tempfile.mkdtemp(dir=args.dir, prefix="bench-repo-"))
    print("best of", args.repeat, "interleaved repeats;", "hash threads:", args.hash_threads or "default")
    print(f"{args.models} models x {args.mb} MB ({args.tensors} tensors each) = {total:.0f} MB, in {base}")
    try:
        variants = [("raw", None, 2), ("raw 1file", None, 1)] + [(f"repo {a}", a, True) for a in args.algorithms]
        variants.append(("repo noverify", DEFAULT_HASH, False))
        variants.append(("repo library", DEFAULT_HASH, "library"))
        for fsync in {"both": (True, False), "on": (True,), "off": (False,)}[args.fsync]:
            results = {}
            for rep in range(args.repeat):  # variants interleaved, so page-cache writeback hits all alike
                for label, fn, verify in variants:
                    root = base / f"{label.replace(' ', '-')}-{fsync}-{rep}"
                    if fn is None:
                        w, r = raw(root, states, fsync, files=verify)
                    else:
                        w, r = repo(root, states, fsync, fn, args.hash_threads, verify is not False,
                                    library_writer if verify == "library" else None)
                    shutil.rmtree(root)
                    best = results.get(label)
                    results[label] = (w, r) if best is None or w + r < sum(best) else best
            rw, rr = results["raw"]
            ow, orr = results["raw 1file"]
            for label, (w, r) in results.items():
                print(
                    f"fsync={fsync!s:<5} {label:<13} write {total / w:7.0f} MB/s  read {total / r:7.0f} MB/s  "
                    f"write+read {total / (w + r):7.0f} MB/s  ratio vs raw: write {rw / w:4.2f}  read {rr / r:4.2f}  "
                    f"both {(rw + rr) / (w + r):4.2f}  (vs raw 1file: both {(ow + orr) / (w + r):4.2f})"
                )
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
