"""Tensor-level model repository shared by all ranks.

Each stored model has one safetensors file with the tensors it trained itself and one metadata JSON
whose manifest maps every state_dict name to a tensor entry. A tensor inherited from a donor (transferred
and kept frozen) is not written again: its entry keeps the owner's id and file, so a tensor has one
identity along a lineage (exact deduplication).

Layout under `root`:
    tensors/{model_id}.safetensors   tensors trained by that model (absent when it owns none)
    models/{model_id}.json           metadata + manifest; published last, so it marks a complete model
    .tmp-*                           in-flight writes (durable.temp_path; `clean()` removes leftovers)

A manifest entry: {"tensor_id": "{owner}/{name}", "owner": int, "file": relative path, "key": name
in that file, "nbytes", "dtype", "shape", "hash": "<algorithm>:<hex>"}. The algorithm is recorded per
tensor, so entries written with any of HASHES verify whatever the repository's current default is:
"xxh3_128" (xxHash XXH3, 128 bits; the default, ~10x faster than sha256 per core), "sha256",
"blake2b" (128-bit digest) or "crc32". These detect corruption, not tampering.

No pickle: tensors go through safetensors, metadata through JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import time
import zlib
from collections import OrderedDict, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import torch
import xxhash

from .durable import TMP_PREFIX, atomic_write, temp_path, write_all

FORMAT = 1
HASHES = ("xxh3_128", "sha256", "crc32", "blake2b")
DEFAULT_HASH = "xxh3_128"


class CorruptTensor(RuntimeError):
    """A stored tensor whose bytes, header, dtype or shape do not match its manifest entry."""

    def __init__(self, model_id, name, path, reason):
        self.model_id, self.name, self.path, self.reason = model_id, name, str(path), reason
        super().__init__(f"corrupt tensor {name!r} of model {model_id} in {path}: {reason}")


_OWN_FILE = re.compile(r"tensors/[0-9]+\.safetensors")


def _checked_file(rel, entry: dict) -> str:
    """A manifest's file name, accepted only in the repository's own form ("tensors/<id>.safetensors"):
    a tampered manifest must not make a read or a delete reach outside the repository."""
    if not isinstance(rel, str) or not _OWN_FILE.fullmatch(rel):
        raise CorruptTensor(entry.get("owner"), entry.get("key"), rel,
                            "manifest names a file that is not one of the repository's tensor files")
    return rel


class ModelExists(FileExistsError):
    """Model ids are job ids and unique; a second put of the same id is a bug in the caller."""


def _bytes_view(tensor: torch.Tensor) -> memoryview:
    """The tensor's raw bytes without a copy (for a contiguous tensor; hashlib releases the GIL on large
    buffers)."""
    if tensor.requires_grad:
        tensor = tensor.detach()
    if not tensor.is_contiguous():
        tensor = tensor.contiguous()
    return memoryview(tensor.reshape(-1).view(torch.uint8).numpy())


def tensor_hash(tensor: torch.Tensor, algorithm: str = DEFAULT_HASH) -> str:
    """"<algorithm>:<hex digest>" of the tensor's raw bytes, hashed in place (no copy)."""
    return _digest(_bytes_view(tensor), algorithm)


_POOL: ThreadPoolExecutor | None = None


def _pool(threads: int) -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None or _POOL._max_workers < threads:
        _POOL = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="evotrace-hash")
    return _POOL


def hash_many(tensors: list[torch.Tensor], algorithms: list[str], threads: int) -> list[str]:
    """Hash several tensors at once: hashlib and xxhash release the GIL, so threads overlap on multi-core
    nodes."""
    if threads <= 1 or len(tensors) < 2:
        return [tensor_hash(t, a) for t, a in zip(tensors, algorithms)]
    return list(_pool(threads).map(tensor_hash, tensors, algorithms))


_ST_DTYPES = {
    getattr(torch, name): code
    for name, code in [
        ("float64", "F64"), ("float32", "F32"), ("float16", "F16"), ("bfloat16", "BF16"), ("int64", "I64"),
        ("int32", "I32"), ("int16", "I16"), ("int8", "I8"), ("uint8", "U8"), ("bool", "BOOL"),
        ("uint16", "U16"), ("uint32", "U32"), ("uint64", "U64"), ("complex64", "C64"),
        ("float8_e4m3fn", "F8_E4M3"), ("float8_e5m2", "F8_E5M2"),
    ]
    if hasattr(torch, name)
}


_ST_TO_TORCH = {code: dtype for dtype, code in _ST_DTYPES.items()}
_MAX_HEADER = 100 << 20  # safetensors' own limit on the JSON header


def _digest(data, algorithm: str) -> str:
    """"<algorithm>:<hex digest>" of a bytes-like object (the same digest tensor_hash gives its tensor)."""
    if algorithm == "xxh3_128":
        return "xxh3_128:" + xxhash.xxh3_128_hexdigest(data)
    if algorithm == "sha256":
        return "sha256:" + hashlib.sha256(data).hexdigest()
    if algorithm == "blake2b":
        return "blake2b:" + hashlib.blake2b(data, digest_size=16).hexdigest()
    if algorithm == "crc32":
        return f"crc32:{zlib.crc32(data):08x}"
    raise ValueError(f"unknown hash {algorithm!r}; choose from {HASHES}")


def write_safetensors(path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str],
                      algorithm: str, fsync: bool, progress=None, before_sync=None,
                      after_open=None) -> dict[str, str]:
    """Write a standard safetensors file (read back by the safetensors library: tests/test_repository.py)
    and hash each tensor from the very memory the write just read (still in cache): one pass over the
    bytes, no copy, as a raw write would. Not the library's `save_file`: it takes a path (no O_EXCL, no
    fsync of its descriptor) and leaves the hashing to a second pass; with it the repository wrote about
    a quarter slower (bench/bench_repository.py "repo library", fsync on, 40 x 4 MB models: 0.77x vs
    1.00x and 0.55x vs 0.73x of raw files in two rounds on a shared 2-core machine).
    The file is created exclusively (O_EXCL) at `path`; `after_open()`, if given, is called once it is
    created and `before_sync(hashes)` once all bytes are written, before the fsync. Returns name -> hash."""
    order = sorted(tensors, key=lambda n: (-tensors[n].element_size(), n))  # keeps offsets aligned
    header: dict = {"__metadata__": dict(metadata)}
    views = []
    offset = 0
    for name in order:
        t = tensors[name]
        if t.dtype not in _ST_DTYPES:
            raise TypeError(f"tensor {name!r}: dtype {t.dtype} has no safetensors code")
        view = _bytes_view(t)
        header[name] = {"dtype": _ST_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + view.nbytes]}
        offset += view.nbytes
        views.append(view)
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    hashes = {}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        if after_open is not None:
            after_open()
        write_all(fd, struct.pack("<Q", len(blob)) + blob)
        for i, (name, view) in enumerate(zip(order, views)):
            write_all(fd, view)
            hashes[name] = _digest(view, algorithm)
            if progress is not None:
                progress(i + 1, len(order))
        if before_sync is not None:
            before_sync(hashes)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    return hashes


def _preadv_all(fd: int, views: list, offset: int, path) -> None:
    """Fill `views` (writable byte views) from consecutive file bytes starting at `offset`."""
    views = [v for v in views if v.nbytes]
    while views:
        got = os.preadv(fd, views[:1024], offset)
        if got == 0:
            raise EOFError(f"{path}: file ends before byte {offset}")
        offset += got
        while views and got >= views[0].nbytes:
            got -= views[0].nbytes
            views.pop(0)
        if got:
            views[0] = views[0][got:]


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


_META_POOL: ThreadPoolExecutor | None = None


def _meta_pool() -> ThreadPoolExecutor:
    global _META_POOL
    if _META_POOL is None:
        _META_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="evotrace-meta")
    return _META_POOL


def _create(path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)


def _write_close(fd: int, data: bytes, fsync: bool) -> None:
    try:
        write_all(fd, data)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


class _PendingMetadata:
    """A put's metadata file, written on a helper thread so that its create and fsync overlap the tensor
    file's (creating a file and syncing a small one cost about as much as a few MB of data). It is
    created once the tensor file is (`create`), written once the hashes are known (`submit`), and
    published only after the tensor file is durable under its final name (`publish`)."""

    def __init__(self, path: Path, meta: dict, fsync: bool):
        self.path, self.tmp, self.meta, self.fsync = path, temp_path(path), meta, fsync
        self.blob = b""
        self._fd = None  # Future of the descriptor
        self._job = None  # Future of the write

    def create(self) -> None:
        if self._fd is None:  # after the tensor file's own create: the two would contend
            self._fd = _meta_pool().submit(_create, self.tmp)

    def submit(self, hashes: Mapping[str, str]) -> None:
        for name, digest in hashes.items():
            self.meta["manifest"][name]["hash"] = digest
        self.blob = json.dumps(self.meta, separators=(",", ":")).encode()
        self.create()
        self._job = _meta_pool().submit(_write_close, self._fd.result(), self.blob, self.fsync)

    def publish(self) -> None:
        self._job.result()  # written (and synced) under its temporary name
        os.replace(self.tmp, self.path)  # a lost rename only hides the model: no directory fsync

    def abandon(self) -> None:
        """After a failure: close or finish what the helper thread holds, then remove the temporary file."""
        try:
            if self._job is not None:
                self._job.result()
            elif self._fd is not None:  # the descriptor was never handed to _write_close
                os.close(self._fd.result())
        except BaseException:
            pass
        self.tmp.unlink(missing_ok=True)


@dataclass
class PutResult:
    model_id: int
    bytes_written: int  # tensor file + metadata, as written to the repository
    tensors_written: int
    tensors_inherited: int
    rewritten: list[str] = field(default_factory=list)  # inherited entries that no longer matched
    file: str | None = None
    seconds: float = 0.0


@dataclass
class ModelRecord:
    model_id: int
    arch_seq: tuple[int, ...]
    quality: float | None
    manifest: dict[str, dict]
    file: str | None
    extra: dict


class ModelRepository:
    RECORDS_CACHED = 4096

    """A directory of models on a filesystem shared by all ranks; any rank may put models with distinct
    ids concurrently, and any rank may read. Metadata is immutable once published and is cached."""

    def __init__(self, root, hash_algorithm: str = DEFAULT_HASH, fsync: bool = True, hash_threads: int | None = None):
        """`hash_algorithm`: content hash of newly written tensors (one of HASHES; reads verify each entry
        with the algorithm it records); `fsync`: make each published file durable (off only for scratch
        repositories and benches); `hash_threads`: threads hashing tensors, overlapping the file write on
        put (default: up to 4 cores; 0 hashes inline)."""
        if hash_algorithm not in HASHES:
            raise ValueError(f"unknown hash {hash_algorithm!r}; choose from {HASHES}")
        self.root = Path(root)
        self.hash_algorithm = hash_algorithm
        self.fsync = fsync
        self.hash_threads = min(4, os.cpu_count() or 1) if hash_threads is None else int(hash_threads)
        (self.root / "tensors").mkdir(parents=True, exist_ok=True)
        (self.root / "models").mkdir(parents=True, exist_ok=True)
        self._records: OrderedDict[int, ModelRecord] = OrderedDict()  # most recently used last
        self.bytes_read = 0
        self.bytes_written = 0
        self.tensors_read = 0
        self.tensors_written = 0
        self._crash_hook = None  # tests only: called with a stage name during put()

    # ---------------------------------------------------------------- paths
    def _meta_path(self, model_id: int) -> Path:
        return self.root / "models" / f"{int(model_id)}.json"

    def _tensor_rel(self, model_id: int) -> str:
        return f"tensors/{int(model_id)}.safetensors"

    def _half_written(self, done: int, total: int) -> None:
        if done == total // 2:
            self._stage("half_written")

    def _stage(self, name: str) -> None:
        if self._crash_hook is not None:
            self._crash_hook(name)

    # ---------------------------------------------------------------- write
    def put(
        self,
        model_id: int,
        arch_seq,
        quality: float | None,
        state_dict: Mapping[str, torch.Tensor],
        inherited: Mapping[str, dict] | None = None,
        extra: dict | None = None,
        verify_inherited: bool = True,
    ) -> PutResult:
        """Store a trained model. Names in `inherited` (donor manifest entries of tensors transferred and
        kept frozen) are referenced, not written; with `verify_inherited` an entry whose tensor changed
        after all (e.g. a BatchNorm left in train mode) is written as this model's own and reported in
        `rewritten`. Tensors are written first and metadata last, each to a temporary name, fsynced and
        renamed, so a crash never leaves a visible partial model. Tensors on another device (a GPU) are
        copied to the CPU first."""
        t0 = time.perf_counter()
        model_id = int(model_id)
        state_dict = {n: t.detach().cpu() for n, t in state_dict.items()}
        meta_path = self._meta_path(model_id)
        if meta_path.exists():
            raise ModelExists(f"model {model_id} is already stored in {self.root}")
        inherited = dict(inherited or {})
        unknown = sorted(set(inherited) - set(state_dict))
        if unknown:
            raise KeyError(f"model {model_id}: inherited names not in the state_dict: {unknown[:5]}")
        own, manifest, rewritten = self._split(model_id, state_dict, inherited, verify_inherited)
        meta = {
            "format": FORMAT,
            "model_id": model_id,
            "arch_seq": [int(v) for v in arch_seq],
            "quality": None if quality is None else float(quality),
            "file": self._tensor_rel(model_id) if own else None,
            "created": time.time(),
            "extra": extra or {},
            "manifest": manifest,
        }
        pending = _PendingMetadata(meta_path, meta, self.fsync)
        try:
            file_bytes = self._write_tensors(model_id, own, pending) if own else 0
            if not own:
                pending.submit({})
            self._stage("tensors_published")
            pending.publish()
        except BaseException:
            pending.abandon()
            raise
        written = file_bytes + len(pending.blob)
        self.bytes_written += written
        self.tensors_written += len(own)
        self._remember(model_id, self._record(meta))
        return PutResult(
            model_id=model_id,
            bytes_written=written,
            tensors_written=len(own),
            tensors_inherited=len(state_dict) - len(own),
            rewritten=rewritten,
            file=meta["file"],
            seconds=time.perf_counter() - t0,
        )

    def _split(self, model_id: int, state_dict: dict, inherited: dict, verify: bool):
        """The tensors this model writes itself, its manifest (inherited entries kept, own entries
        with their hash still to fill) and the inherited names that no longer matched their donor."""
        manifest: dict[str, dict] = {}
        own: dict[str, torch.Tensor] = {}
        rewritten = []
        same = self._same(inherited, state_dict, verify)
        for name, tensor in state_dict.items():
            entry = inherited.get(name)
            if entry is not None and same[name]:
                manifest[name] = dict(entry)
                continue
            if entry is not None:
                rewritten.append(name)
            own[name] = tensor.contiguous()
        rel = self._tensor_rel(model_id)
        for name, tensor in own.items():
            manifest[name] = {
                "tensor_id": f"{model_id}/{name}",
                "owner": model_id,
                "file": rel,
                "key": name,
                "nbytes": tensor.numel() * tensor.element_size(),
                "dtype": _dtype_name(tensor.dtype),
                "shape": list(tensor.shape),
                "hash": None,  # filled in while the tensor file is written
            }
        return own, manifest, rewritten

    def _write_tensors(self, model_id: int, own: dict, pending: _PendingMetadata) -> int:
        """Write the tensor file, handing the hashes to the metadata writer before the fsync, and publish
        it durably (directory fsync) before any metadata names it. Returns its size."""
        final = self.root / self._tensor_rel(model_id)
        with atomic_write(final, sync_dir=self.fsync) as tmp:
            write_safetensors(
                tmp, own, {"model_id": str(model_id), "format": str(FORMAT)}, self.hash_algorithm, self.fsync,
                progress=None if self._crash_hook is None else self._half_written,
                before_sync=pending.submit, after_open=pending.create,
            )
            self._stage("tensors_written")
        return final.stat().st_size

    def _same(self, inherited: Mapping[str, dict], state_dict, verify: bool) -> dict[str, bool]:
        """Whether each inherited tensor still matches its donor entry (dtype, shape, and hash if `verify`)."""
        same = {
            n: e["dtype"] == _dtype_name(state_dict[n].dtype) and list(e["shape"]) == list(state_dict[n].shape)
            for n, e in inherited.items()
        }
        if verify:
            names = [n for n, ok in same.items() if ok]
            algorithms = [inherited[n]["hash"].split(":", 1)[0] for n in names]
            digests = hash_many([state_dict[n] for n in names], algorithms, self.hash_threads)
            for n, digest in zip(names, digests):
                same[n] = digest == inherited[n]["hash"]
        return same

    # ---------------------------------------------------------------- metadata
    @staticmethod
    def _record(meta: dict) -> ModelRecord:
        return ModelRecord(
            model_id=int(meta["model_id"]),
            arch_seq=tuple(meta["arch_seq"]),
            quality=meta["quality"],
            manifest=meta["manifest"],
            file=meta["file"],
            extra=meta.get("extra", {}),
        )

    def list_models(self) -> list[int]:
        """Ids of completely stored models (published metadata), ascending."""
        ids = []
        for entry in os.scandir(self.root / "models"):
            stem, dot, ext = entry.name.partition(".")
            if ext == "json" and stem.isdigit():
                ids.append(int(stem))
        return sorted(ids)

    def __contains__(self, model_id) -> bool:
        return int(model_id) in self._records or self._meta_path(model_id).exists()

    def get(self, model_id: int) -> ModelRecord:
        model_id = int(model_id)
        record = self._records.get(model_id)
        if record is not None:
            self._records.move_to_end(model_id)
        if record is None:
            with open(self._meta_path(model_id), "rb") as fh:
                record = self._record(json.loads(fh.read()))
            self._remember(model_id, record)
        return record

    def get_manifest(self, model_id: int) -> dict[str, dict]:
        return self.get(model_id).manifest

    # ---------------------------------------------------------------- read
    def read_tensor(self, entry: dict, verify: bool = True) -> torch.Tensor:
        return self.read_tensors({entry["key"]: entry}, verify=verify)[entry["key"]]

    def read_tensors(self, entries: Mapping[str, dict], verify: bool = True) -> dict[str, torch.Tensor]:
        """Read the given entries (name -> manifest entry), opening each file once; every tensor is
        checked against its entry's dtype, shape and hash. Raises CorruptTensor on the first mismatch.

        Each file's header is parsed here, then the requested byte ranges are read straight into freshly
        allocated tensors (one preadv per run of adjacent tensors: no intermediate buffer, no copy) and
        each tensor is hashed right after its read, while its bytes are still in cache. A single tensor
        costs a seek + read of its own range only."""
        by_file: dict[str, list[tuple[str, dict]]] = defaultdict(list)
        for name, entry in entries.items():
            by_file[_checked_file(entry["file"], entry)].append((name, entry))
        out: dict[str, torch.Tensor] = {}
        nbytes = 0
        for rel, items in by_file.items():
            path = self.root / rel
            first = items[0][1]
            try:
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError as err:
                raise CorruptTensor(first["owner"], first["key"], path, f"cannot open: {err}") from err
            try:
                nbytes += self._read_file(fd, path, items, out, verify)
            finally:
                os.close(fd)
        self.bytes_read += nbytes
        self.tensors_read += len(out)
        return out

    def _read_file(self, fd: int, path: Path, items: list[tuple[str, dict]], out: dict, verify: bool) -> int:
        first = items[0][1]
        size = os.fstat(fd).st_size
        try:
            head = os.pread(fd, 8, 0)
            (hlen,) = struct.unpack("<Q", head)
            if hlen > min(_MAX_HEADER, size - 8):
                raise ValueError(f"header length {hlen} exceeds the file ({size} bytes)")
            header = json.loads(os.pread(fd, hlen, 8))
            if not isinstance(header, dict):
                raise ValueError("header is not a JSON object")
        except Exception as err:  # truncated or garbled header
            raise CorruptTensor(first["owner"], first["key"], path, f"cannot open: {err}") from err
        base = 8 + hlen
        plan = []  # (start, end, name, entry, tensor, byte view)
        for name, entry in items:
            info = header.get(entry["key"])
            try:
                dtype = _ST_TO_TORCH[info["dtype"]]
                shape = [int(v) for v in info["shape"]]
                start, end = (int(v) for v in info["data_offsets"])
            except Exception as err:
                raise CorruptTensor(entry["owner"], entry["key"], path, f"cannot read: bad header entry {info!r}") from err
            if _dtype_name(dtype) != entry["dtype"] or shape != list(entry["shape"]):
                raise CorruptTensor(
                    entry["owner"], entry["key"], path,
                    f"stored {_dtype_name(dtype)}{shape}, manifest {entry['dtype']}{entry['shape']}",
                )
            tensor = torch.empty(shape, dtype=dtype)
            need = tensor.numel() * tensor.element_size()
            if end - start != need or start < 0 or base + end > size:
                raise CorruptTensor(entry["owner"], entry["key"], path, f"cannot read: data_offsets {[start, end]} "
                                    f"do not fit {need} bytes in a {size}-byte file")
            plan.append((start, end, name, entry, tensor, _bytes_view(tensor)))
        plan.sort(key=lambda p: p[0])
        i = 0
        while i < len(plan):  # one preadv per run of adjacent tensors
            j = i + 1
            while j < len(plan) and plan[j][0] == plan[j - 1][1] and j - i < 1024:
                j += 1
            run = plan[i:j]
            try:
                _preadv_all(fd, [p[5] for p in run], base + run[0][0], path)
            except (OSError, EOFError) as err:
                raise CorruptTensor(run[0][3]["owner"], run[0][3]["key"], path, f"cannot read: {err}") from err
            for _, _, name, entry, tensor, view in run:
                if verify:
                    algorithm = entry["hash"].split(":", 1)[0]
                    if _digest(view, algorithm) != entry["hash"]:
                        raise CorruptTensor(entry["owner"], entry["key"], path, "content hash mismatch")
                out[name] = tensor
            i = j
        return sum(p[3]["nbytes"] for p in plan)

    def load(self, model_id: int, names: Iterable[str] | None = None, verify: bool = True) -> dict[str, torch.Tensor]:
        """Tensors of a stored model by state_dict name (all when `names` is None), wherever they live."""
        manifest = self.get_manifest(model_id)
        names = manifest.keys() if names is None else names
        return self.read_tensors({n: manifest[n] for n in names}, verify=verify)

    def verify(self, model_id: int) -> int:
        """Read and check every tensor of a model; returns the bytes checked."""
        before = self.bytes_read
        self.load(model_id)
        return self.bytes_read - before

    # ---------------------------------------------------------------- maintenance
    def refcounts(self) -> dict[str, int]:
        """Number of stored models referring to each tensor file (a scan of all metadata)."""
        counts: dict[str, int] = defaultdict(int)
        for model_id in self.list_models():
            for rel in {e["file"] for e in self.get_manifest(model_id).values()}:
                counts[rel] += 1
        return dict(counts)

    def _remember(self, model_id: int, record: ModelRecord) -> None:
        """Cache a model's metadata, keeping at most RECORDS_CACHED (a worker of a 100k search would
        otherwise hold every manifest it ever read)."""
        self._records[model_id] = record
        self._records.move_to_end(model_id)
        while len(self._records) > self.RECORDS_CACHED:
            self._records.popitem(last=False)

    def discard(self, model_id: int) -> list[str]:
        """Unpublish a model that no other model refers to (a resumed search's re-submitted candidate,
        never announced as a donor): its metadata and its own tensor file, without scanning the others."""
        model_id = int(model_id)
        own = self._tensor_rel(model_id)
        self._meta_path(model_id).unlink(missing_ok=True)
        self._records.pop(model_id, None)
        removed = ["models/" + self._meta_path(model_id).name]
        if (self.root / own).exists():
            (self.root / own).unlink()
            removed.append(own)
        return removed

    def delete(self, model_id: int) -> list[str]:
        """Unpublish a model and remove the tensor files no stored model refers to any more. Returns the
        files removed. Scans all metadata: meant for one maintenance process, not for concurrent use."""
        model_id = int(model_id)
        files = {_checked_file(e["file"], e) for e in self.get_manifest(model_id).values()}
        self._meta_path(model_id).unlink()
        self._records.pop(model_id, None)
        alive = self.refcounts()
        removed = []
        for rel in sorted(files - set(alive)):
            (self.root / rel).unlink(missing_ok=True)
            removed.append(rel)
        return removed

    def clean(self, max_age_s: float = 3600.0) -> list[str]:
        """Remove leftovers of crashed writers: temporary files older than `max_age_s` (younger ones may
        belong to a running put) and tensor files without published metadata nor references."""
        now, removed = time.time(), []
        for sub in ("tensors", "models"):
            for entry in os.scandir(self.root / sub):
                if entry.name.startswith(TMP_PREFIX) and now - entry.stat().st_mtime > max_age_s:
                    os.unlink(entry.path)
                    removed.append(f"{sub}/{entry.name}")
        alive = set(self.refcounts())
        for entry in os.scandir(self.root / "tensors"):
            rel = f"tensors/{entry.name}"
            if entry.name.endswith(".safetensors") and rel not in alive:
                if now - entry.stat().st_mtime > max_age_s:
                    os.unlink(entry.path)
                    removed.append(rel)
        return removed

    def stats(self) -> dict:
        return {
            "bytes_read": self.bytes_read,
            "bytes_written": self.bytes_written,
            "tensors_read": self.tensors_read,
            "tensors_written": self.tensors_written,
        }
