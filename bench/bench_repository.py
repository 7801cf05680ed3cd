"""Repository write+read throughput against raw files holding the same bytes (target >= 0.8x).

Each model is a state_dict of a few MB. The repository path hashes every tensor on write and verifies
it on read, writes safetensors + metadata JSON through temp-file/fsync/rename; the raw path writes the
tensor bytes to one file per model (same fsync + rename, so durability is equal) and reads it back
whole. Reads come from the page cache on both sides. "repo <algorithm>" hashes with that algorithm
(xxh3_128 is the repository's default); "repo noverify" writes with crc32 and reads without checking
hashes: the I/O path alone."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from evotrace.repository import HASHES, ModelRepository


def models(n, mb, tensors, seed=0):
    g = torch.Generator().manual_seed(seed)
    per = int(mb * 2**20 / 4 / tensors)
    return [{f"layer{i}.weight": torch.randn(per, generator=g) for i in range(tensors)} for _ in range(n)]


def raw(root: Path, states, fsync: bool):
    root.mkdir(parents=True)
    t0 = time.perf_counter()
    for i, sd in enumerate(states):
        tmp, final = root / f".tmp-{i}", root / f"{i}.bin"
        with open(tmp, "wb") as fh:
            for t in sd.values():
                fh.write(memoryview(t.view(torch.uint8).numpy()))
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, final)
    if fsync:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(fd)
        os.close(fd)
    write = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(len(states)):
        with open(root / f"{i}.bin", "rb") as fh:
            data = fh.read()
        torch.frombuffer(bytearray(data), dtype=torch.float32)
    read = time.perf_counter() - t0
    return write, read


def repo(root: Path, states, fsync: bool, algorithm: str, threads: int | None, verify: bool = True):
    r = ModelRepository(root, hash_algorithm=algorithm, fsync=fsync, hash_threads=threads)
    t0 = time.perf_counter()
    for i, sd in enumerate(states):
        r.put(i, (i,), 0.5, sd)
    write = time.perf_counter() - t0
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
        variants = [("raw", None, True)] + [(f"repo {a}", a, True) for a in args.algorithms]
        variants.append(("repo noverify", "crc32", False))
        for fsync in {"both": (True, False), "on": (True,), "off": (False,)}[args.fsync]:
            results = {}
            for rep in range(args.repeat):  # variants interleaved, so page-cache writeback hits all alike
                for label, fn, verify in variants:
                    root = base / f"{label.replace(' ', '-')}-{fsync}-{rep}"
                    if fn is None:
                        w, r = raw(root, states, fsync)
                    else:
                        w, r = repo(root, states, fsync, fn, args.hash_threads, verify)
                    shutil.rmtree(root)
                    best = results.get(label)
                    results[label] = (w, r) if best is None or w + r < sum(best) else best
            rw, rr = results["raw"]
            for label, (w, r) in results.items():
                print(
                    f"fsync={fsync!s:<5} {label:<13} write {total / w:7.0f} MB/s  read {total / r:7.0f} MB/s  "
                    f"write+read {total / (w + r):7.0f} MB/s  ratio vs raw: write {rw / w:4.2f}  read {rr / r:4.2f}  "
                    f"both {(rw + rr) / (w + r):4.2f}"
                )
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
