"""The trace schemas: one row per candidate, one row per tensor read. Explicit Arrow schemas so that
every writer and reader agrees on names and types; run parameters travel as key/value metadata."""

from __future__ import annotations

import base64
import json
import os
from contextlib import contextmanager

import numpy as np
import pyarrow as pa

CANDIDATE_FIELDS = [
    pa.field("run", pa.string(), nullable=False),
    pa.field("job_id", pa.int64(), nullable=False),  # 0..N-1 in creation order
    pa.field("worker", pa.int32(), nullable=False),  # MPI rank that trained it
    pa.field("host", pa.string()),
    pa.field("pid", pa.int32()),
    pa.field("submit_time", pa.float64()),  # seconds since the search started, one wall clock
    pa.field("start_time", pa.float64()),
    pa.field("end_time", pa.float64()),
    pa.field("stage", pa.int8(), nullable=False),  # 1 random, 2 mutation
    pa.field("arch_seq", pa.list_(pa.int16()), nullable=False),
    pa.field("parent_id", pa.int64()),  # null in stage 1
    pa.field("mutation_pos", pa.int16()),  # null in stage 1
    pa.field("quality", pa.float64()),  # null if failed
    pa.field("status", pa.string(), nullable=False),  # "ok" | "failed"
    pa.field("error", pa.string()),  # why it failed; null when status is "ok"
    pa.field("warning", pa.string()),  # what went wrong without failing it (transfer skipped, not stored)
    pa.field("epochs", pa.int32()),
    pa.field("train_seconds", pa.float64()),
    pa.field("insert_seq", pa.int64()),  # order of insertion into the population; null if failed
    pa.field("population_version", pa.int64()),  # insertions done when this candidate was created
    # transfer learning (null/0 when transfer is off)
    pa.field("donor_id", pa.int64()),  # null unless at least one tensor was copied from it
    pa.field("prefix_len", pa.int16()),
    pa.field("n_transferred_tensors", pa.int32()),
    pa.field("bytes_read", pa.int64()),
    pa.field("bytes_written", pa.int64()),
    pa.field("stored", pa.bool_()),
    pa.field("transfer_seconds", pa.float64()),
    pa.field("cache_hits", pa.int32()),
]
CANDIDATES = pa.schema(CANDIDATE_FIELDS)

TENSOR_READS = pa.schema(
    [
        pa.field("run", pa.string(), nullable=False),
        pa.field("job_id", pa.int64(), nullable=False),
        pa.field("worker", pa.int32(), nullable=False),
        pa.field("start_time", pa.float64()),
        pa.field("tensor_id", pa.string(), nullable=False),
        pa.field("owner_id", pa.int64(), nullable=False),
        pa.field("position", pa.int16()),  # largest sequence position the tensor depends on (-1: none)
        pa.field("nbytes", pa.int64(), nullable=False),
        pa.field("cache_hit", pa.bool_(), nullable=False),
    ]
)

# Who fills which candidates column; every other spelling of the columns derives from these.
# The master, when it creates a candidate:
CREATED = ("job_id", "stage", "arch_seq", "parent_id", "mutation_pos", "population_version", "submit_time")
# the master, when the result arrives (times moved onto its clock, the quality judged, the insertion):
JUDGED = ("start_time", "end_time", "quality", "status", "insert_seq")
# the worker's report (a real or simulated worker), with the value each column has when it never got
# that far (a failure before training, a candidate without a donor):
REPORTED = {
    "worker": -1, "host": "", "pid": None, "error": None, "warning": None, "epochs": 0, "train_seconds": None,
    "donor_id": None, "prefix_len": None, "n_transferred_tensors": 0, "bytes_read": 0, "bytes_written": 0,
    "stored": False, "transfer_seconds": 0.0, "cache_hits": 0,
}
# the per-tensor columns of tensor_reads a worker reports; the master adds run, job_id, worker, start_time
READ_COLUMNS = ("tensor_id", "owner_id", "position", "nbytes", "cache_hit")
# the little-endian numpy type of each other column in a packed report (the trace schema's width)
READ_TYPES = {"owner_id": "<i8", "position": "<i2", "nbytes": "<i8", "cache_hit": "u1"}
_READ_SIZES = tuple((key, np.dtype(dtype).itemsize) for key, dtype in READ_TYPES.items())


def pack_reads(columns: dict) -> dict:
    """A worker's report of its tensor reads: {"n": reads, "tensor_id": the ids joined by newlines, every
    other READ_COLUMNS column: base64 of its little-endian bytes}. The worker packs, so the master
    unpickles, journals (JSON) and holds a few strings per candidate, whatever the number of reads (a
    converging search transfers ever longer prefixes); only the trace writer unpacks, in bulk. An id that
    holds a newline keeps the ids as a list. `columns`: READ_COLUMNS -> equal-length sequences or arrays."""
    ids = list(columns["tensor_id"])
    joined = "\n".join(ids)
    packed = {"n": len(ids), "tensor_id": joined if joined.count("\n") == max(0, len(ids) - 1) else ids}
    for key, dtype in READ_TYPES.items():
        values = np.asarray(columns[key], dtype=dtype)
        if values.shape != (len(ids),):
            raise ValueError(f"tensor reads: column {key} has {values.size} values for {len(ids)} tensor ids")
        packed[key] = base64.b64encode(values.tobytes()).decode("ascii")
    return packed


def check_packed(packed: dict) -> int:
    """The number of reads of a packed report, after checking that every column holds that many (from the
    lengths alone: no decoding). ValueError names the column that does not."""
    n = packed["n"]
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"packed tensor reads: n={n!r} is not a count")
    ids = packed["tensor_id"]
    if isinstance(ids, list):
        count = len(ids)
    else:
        count = ids.count("\n") + 1 if n else int(ids != "")
    if count != n:
        raise ValueError(f"packed tensor reads: tensor_id does not hold n={n} ids")
    for key, itemsize in _READ_SIZES:
        text = packed[key]
        if len(text) % 4 or len(text) // 4 * 3 - text[-2:].count("=") != n * itemsize:
            raise ValueError(f"packed tensor reads: column {key} does not hold n={n} values")
    return n


def packed_ids(packed: dict) -> list[str]:
    ids = packed["tensor_id"]
    return ids if isinstance(ids, list) else ids.split("\n") if packed["n"] else []


def unpack_reads(packs: list[dict]) -> dict:
    """The READ_COLUMNS of packed reports, concatenated in order: tensor ids as a list, the rest as numpy
    arrays in native byte order (cache_hit as bool)."""
    texts = [packed["tensor_id"] for packed in packs if packed["n"]]
    if all(isinstance(text, str) for text in texts):
        out = {"tensor_id": "\n".join(texts).split("\n") if texts else []}
    else:
        out = {"tensor_id": [tensor_id for packed in packs for tensor_id in packed_ids(packed)]}
    for key, dtype in READ_TYPES.items():
        raw = b"".join([base64.b64decode(packed[key], validate=True) for packed in packs])
        values = np.frombuffer(raw, dtype=dtype)
        out[key] = values.astype(bool) if key == "cache_hit" else values.astype(values.dtype.newbyteorder("="))
        if len(values) != len(out["tensor_id"]):
            raise ValueError(f"packed tensor reads: column {key} holds {len(values)} values for "
                             f"{len(out['tensor_id'])} tensor ids")
    return out


_NO_READS = pack_reads({c: [] for c in READ_COLUMNS})


def no_reads() -> dict:
    """The packed report (pack_reads) of a job that read nothing."""
    return dict(_NO_READS)


METADATA_KEY = b"evotrace"


def with_run_metadata(schema: pa.Schema, params: dict) -> pa.Schema:
    """Attach the search parameters (N, p, s, W, seed, space, options...) as JSON metadata."""
    return schema.with_metadata({METADATA_KEY: json.dumps(params, sort_keys=True).encode()})


def run_metadata(schema: pa.Schema) -> dict:
    raw = (schema.metadata or {}).get(METADATA_KEY)
    return json.loads(raw) if raw else {}


class TraceError(ValueError):
    """A trace file that cannot be analysed; the message names the file and the problem."""


_STRING_LIKE = (pa.string(), pa.large_string(), pa.string_view())


def check_schema(actual: pa.Schema, expected: pa.Schema, path) -> None:
    """Fail early, naming the column, when a trace does not follow its schema: every analysis assumes
    these names and types, and a wrong one would otherwise surface far away as a puzzling result."""
    names = set(actual.names)
    missing = [f.name for f in expected if f.name not in names]
    if missing:
        raise TraceError(f"{path}: missing column(s) {', '.join(missing)}")
    extra = [n for n in actual.names if n not in set(expected.names)]
    if extra:
        raise TraceError(f"{path}: unexpected column(s) {', '.join(extra)}")
    for field in expected:
        got = actual.field(field.name).type
        if pa.types.is_dictionary(got):
            got = got.value_type
        if got != field.type and not (field.type in _STRING_LIKE and got in _STRING_LIKE):
            raise TraceError(f"{path}: column {field.name} has type {got}, expected {field.type}")


@contextmanager
def _readable(path):
    """Turn pyarrow's errors on reading `path` into a TraceError that names the file and the problem."""
    try:
        yield
    except FileNotFoundError:
        raise TraceError(f"{path}: no such file") from None
    except (pa.ArrowException, OSError) as err:
        if os.path.exists(path) and os.path.getsize(path) == 0:
            raise TraceError(f"{path}: empty file (0 bytes)") from None
        raise TraceError(f"{path}: not a readable parquet file (truncated or corrupt): {err}") from None


def _checked(table: pa.Table, expected: pa.Schema, path, dictionary=()) -> pa.Table:
    """`table` checked against `expected` and cast to it, the columns named in `dictionary` kept as
    dictionaries (int32 codes)."""
    check_schema(table.schema, expected, path)
    for field in expected:
        if not field.nullable and table.column(field.name).null_count:
            raise TraceError(f"{path}: column {field.name} has {table.column(field.name).null_count} null value(s)")
    metadata = table.schema.metadata
    target = pa.schema([f.with_type(pa.dictionary(pa.int32(), f.type)) if f.name in dictionary else f for f in expected])
    if table.schema.remove_metadata().equals(target):
        return table
    return table.select(target.names).cast(target).replace_schema_metadata(metadata)


def read_trace(path, expected: pa.Schema) -> pa.Table:
    """Read one parquet trace and check it against `expected`; unreadable (empty, truncated, corrupt)
    files and schema violations raise TraceError. Returns the table cast to `expected` (its metadata kept)."""
    import pyarrow.parquet as pq

    with _readable(path):
        table = pq.read_table(path)
    return _checked(table, expected, path)


def iter_trace(path, expected: pa.Schema, rows: int):
    """read_trace a batch of at most `rows` rows at a time (each checked and cast the same way), so that a
    trace of 10^8 tensor reads passes through in bounded memory. The schema is checked before any batch."""
    import pyarrow.parquet as pq

    with _readable(path):
        file = pq.ParquetFile(path)
    check_schema(file.schema_arrow, expected, path)
    batches = file.iter_batches(batch_size=rows)
    while True:
        with _readable(path):
            batch = next(batches, None)
        if batch is None:
            return
        yield _checked(pa.Table.from_batches([batch]), expected, path)


def read_frame(path, expected: pa.Schema, dictionary: tuple[str, ...] = ()):
    """read_trace as a pandas DataFrame, read and converted one column at a time (the columns named in
    `dictionary` first, as categoricals), so that the peak is near the frame itself: 7*10^7 tensor reads
    take 3 GiB as a frame, and 4 GiB more as a whole Arrow table with a dictionary per row group."""
    import pandas as pd
    import pyarrow.parquet as pq

    with _readable(path):
        file = pq.ParquetFile(path, read_dictionary=list(dictionary) or None)
    check_schema(file.schema_arrow, expected, path)
    names = [n for n in dictionary if n in expected.names] + [n for n in expected.names if n not in dictionary]
    columns = {}
    for name in names:
        with _readable(path):
            table = file.read(columns=[name])
        columns[name] = _checked(table, pa.schema([expected.field(name)]), path, dictionary).column(0).to_pandas()
        del table
    return pd.DataFrame({n: columns.pop(n) for n in expected.names}, copy=False)


def read_candidates(path) -> pa.Table:
    return read_trace(path, CANDIDATES)

