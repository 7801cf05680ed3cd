"""Datasets of the study, prepared once into a plain `.npz` file that every search rank loads.

The `.npz` holds only numeric and string arrays (it loads with `allow_pickle=False`):
x_train, y_train, x_val, y_val (float32 features, int64 labels), input_shape, num_classes,
blocks (widths of the tabular feature blocks, one ATTN input each; empty for images) and source.

Sources (the `SOURCES` registry; `register_source` adds one): three embedded ones (no download, for
laptops and CI: two scikit-learn sets and a generated tabular task that stands in for ATTN) and the
study's two real ones, CIFAR-10 (NAS-Bench-201) and CANDLE ATTN `top_21_1fold_001.h5`, whose download
the workflow does from the URL and checksum their `Source.download` names.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .durable import atomic_write

# generated-attn: a binary problem shaped like CANDLE ATTN (few positives, many weak features), small
# enough that a candidate trains no longer than on breast-cancer; GENERATED_ROWS before the split
ATTN_POSITIVE_FRACTION = 0.0361  # 3.61 % positive rows in top_21_1fold_001.h5
GENERATED_ROWS = 6000
GENERATED_FEATURES = 40

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_FILE = "cifar-10-python.tar.gz"
# the checksum published on https://www.cs.toronto.edu/~kriz/cifar.html (no official sha256 exists)
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_TRAIN_MEMBERS = [f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)]

# Pilot1/Attn/attn_default_model.txt (data_url + train_data) and Pilot1/Attn/README.md of
# github.com/ECP-CANDLE/Benchmarks. CANDLE publishes no checksum for this file (about 4 GB):
# pin one yourself with `evotrace data verify --sha256` after a first trusted download.
ATTN_URL = "http://ftp.mcs.anl.gov/pub/candle/public/benchmarks/Pilot1/uno/top_21_1fold_001.h5"
ATTN_FILE = "top_21_1fold_001.h5"
ATTN_MD5 = None

KEYS = ("x_train", "y_train", "x_val", "y_val", "input_shape", "num_classes", "blocks", "source")


class DataError(ValueError):
    """A dataset file that is missing, malformed or fails its checksum; the message names the file."""


@dataclass(frozen=True)
class Dataset:
    """One prepared dataset; `input_shape` excludes the batch axis, `blocks` sums to the tabular width."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    input_shape: tuple[int, ...]
    num_classes: int
    blocks: tuple[int, ...]
    source: str


@dataclass(frozen=True)
class Source:
    """A dataset source: `kind` ("image" or "tabular", as `evotrace.spaces.base.DATASET_KINDS`) says
    which spaces it feeds and whether it takes input_blocks; `download` ({"url", "file", "md5"}) is
    set for a source the workflow downloads, whose `prepare` then takes the file as first argument."""

    name: str
    kind: str
    prepare: Callable[..., Dataset]
    download: dict | None = None


SOURCES: dict[str, Source] = {}


def register_source(name: str, kind: str, download: dict | None = None):
    """Decorator of a prepare function: (path if downloaded, *, validation_fraction, seed,
    max_train, max_val, input_blocks if tabular) -> Dataset."""

    def register(prepare: Callable[..., Dataset]) -> Callable[..., Dataset]:
        SOURCES[name] = Source(name, kind, prepare, download)
        return prepare

    return register


def get_source(name: str) -> Source:
    try:
        return SOURCES[name]
    except KeyError:
        raise DataError(f"unknown dataset source {name!r}; known: {sorted(SOURCES)}") from None


# ---------------------------------------------------------------- file format


def save(ds: Dataset, path: str | os.PathLike) -> None:
    """Write atomically so that an interrupted job leaves no partial output."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(
                f,
                x_train=np.ascontiguousarray(ds.x_train, dtype=np.float32),
                y_train=np.asarray(ds.y_train, dtype=np.int64),
                x_val=np.ascontiguousarray(ds.x_val, dtype=np.float32),
                y_val=np.asarray(ds.y_val, dtype=np.int64),
                input_shape=np.asarray(ds.input_shape, dtype=np.int64),
                num_classes=np.asarray(ds.num_classes, dtype=np.int64),
                blocks=np.asarray(ds.blocks, dtype=np.int64),
                source=np.asarray(ds.source),
            )


def load(path: str | os.PathLike) -> Dataset:
    """Read a prepared dataset, checking keys, dtypes and shapes so a bad file fails here, not mid-search."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: dataset file not found (run `evotrace data prepare`)")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in KEYS if k not in z.files]
            if missing:
                raise DataError(f"{path}: missing key(s) {missing}; a dataset needs {list(KEYS)}")
            arrays = {k: z[k] for k in KEYS}
    except DataError:
        raise
    except Exception as err:  # zipfile.BadZipFile, ValueError (object arrays), OSError
        raise DataError(f"{path}: not a readable dataset .npz ({type(err).__name__}: {err})") from err

    input_shape = tuple(int(v) for v in np.atleast_1d(arrays["input_shape"]))
    blocks = tuple(int(v) for v in np.atleast_1d(arrays["blocks"]))
    num_classes = int(arrays["num_classes"])
    ds = Dataset(
        x_train=arrays["x_train"],
        y_train=arrays["y_train"],
        x_val=arrays["x_val"],
        y_val=arrays["y_val"],
        input_shape=input_shape,
        num_classes=num_classes,
        blocks=blocks,
        source=str(arrays["source"]),
    )
    _check(ds, path)
    return ds


def _check(ds: Dataset, path) -> None:
    for name in ("x_train", "x_val"):
        x = getattr(ds, name)
        if x.dtype != np.float32 or x.shape[1:] != ds.input_shape:
            raise DataError(f"{path}: {name} is {x.dtype}{list(x.shape)}, expected float32[n, *{list(ds.input_shape)}]")
    for x_name, y_name in (("x_train", "y_train"), ("x_val", "y_val")):
        x, y = getattr(ds, x_name), getattr(ds, y_name)
        if y.dtype != np.int64 or y.shape != (len(x),):
            raise DataError(f"{path}: {y_name} is {y.dtype}{list(y.shape)}, expected int64[{len(x)}]")
        if len(y) and (y.min() < 0 or y.max() >= ds.num_classes):
            raise DataError(f"{path}: {y_name} has labels outside [0, num_classes={ds.num_classes})")
    if len(ds.input_shape) == 1 and sum(ds.blocks) != ds.input_shape[0]:
        raise DataError(f"{path}: blocks {list(ds.blocks)} do not sum to the {ds.input_shape[0]} features")


# ---------------------------------------------------------------- checksums


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: str | os.PathLike, expected: str, algorithm: str = "sha256") -> str:
    """Raise DataError unless the file's digest equals `expected`; return the digest."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found, cannot verify its {algorithm}")
    actual = file_digest(path, algorithm)
    if actual.lower() != expected.strip().lower():
        raise DataError(f"{path}: {algorithm} mismatch: expected {expected.strip().lower()}, actual {actual}")
    return actual


# ---------------------------------------------------------------- splitting and scaling


def _split(y, fraction: float, seed: int):
    """Seeded stratified split of row indices, so every class keeps its share in train and validation."""
    from sklearn.model_selection import train_test_split

    try:
        return train_test_split(np.arange(len(y)), test_size=fraction, random_state=seed, stratify=y)
    except ValueError as err:
        raise DataError(f"cannot split {len(y)} rows with validation fraction {fraction}: {err}") from err


def _subsample(y, n: int | None, seed: int) -> np.ndarray:
    """Sorted indices of a seeded stratified subset of n rows (all rows when n is None or too large)."""
    if n is None or n >= len(y):
        return np.arange(len(y))
    from sklearn.model_selection import train_test_split

    try:
        keep, _ = train_test_split(np.arange(len(y)), train_size=n, random_state=seed, stratify=y)
    except ValueError as err:
        raise DataError(f"cannot keep a stratified subset of {n} rows: {err}") from err
    return np.sort(keep)


def _standardize(x_train, x_val, axis):
    """Scale both sets with the training statistics only, so validation stays unseen."""
    mean = x_train.mean(axis=axis, keepdims=True, dtype=np.float64)
    std = x_train.std(axis=axis, keepdims=True, dtype=np.float64)
    std[std == 0] = 1.0
    mean, std = mean.astype(np.float32), std.astype(np.float32)  # keeps CIFAR-sized arrays float32
    scale = lambda x: ((x - mean) / std).astype(np.float32)  # noqa: E731
    return scale(x_train), scale(x_val)


def _even_blocks(width: int, n: int) -> tuple[int, ...]:
    if not 1 <= n <= width:
        raise DataError(f"input_blocks={n} must be between 1 and the {width} features")
    return tuple(len(b) for b in np.array_split(np.arange(width), n))


# ---------------------------------------------------------------- sources


@register_source("sklearn-digits", "image")
def prepare_digits(validation_fraction=0.2, seed=0, max_train=None, max_val=None) -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None, :, :]
    y = d.target.astype(np.int64)
    tr, va = _split(y, validation_fraction, seed)
    tr, va = tr[_subsample(y[tr], max_train, seed)], va[_subsample(y[va], max_val, seed)]
    x_tr, x_va = _standardize(x[tr], x[va], axis=(0, 2, 3))
    return Dataset(x_tr, y[tr], x_va, y[va], (1, 8, 8), 10, (), "sklearn-digits")


@register_source("sklearn-breast-cancer", "tabular")
def prepare_breast_cancer(validation_fraction=0.2, seed=0, input_blocks=1, max_train=None, max_val=None) -> Dataset:
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    x, y = d.data.astype(np.float32), d.target.astype(np.int64)
    blocks = _even_blocks(x.shape[1], input_blocks or 1)
    tr, va = _split(y, validation_fraction, seed)
    tr, va = tr[_subsample(y[tr], max_train, seed)], va[_subsample(y[va], max_val, seed)]
    x_tr, x_va = _standardize(x[tr], x[va], axis=0)
    return Dataset(x_tr, y[tr], x_va, y[va], (x.shape[1],), 2, blocks, "sklearn-breast-cancer")


@register_source("generated-attn", "tabular")
def prepare_generated_attn(validation_fraction=0.2, seed=0, input_blocks=1, max_train=None, max_val=None) -> Dataset:
    """A generated stand-in for ATTN, deterministic from `seed`: GENERATED_ROWS rows of
    GENERATED_FEATURES features (a few informative, some redundant, the rest noise) with ATTN's
    3.61 % positives and 1 % flipped labels, so no model separates it perfectly. Accuracy would
    say little here (predicting 'negative' scores 0.96): score it with val_auc."""
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=GENERATED_ROWS, n_features=GENERATED_FEATURES, n_informative=8, n_redundant=8,
        n_clusters_per_class=3, weights=[1 - ATTN_POSITIVE_FRACTION], flip_y=0.01, class_sep=0.8,
        random_state=seed,
    )
    x, y = x.astype(np.float32), y.astype(np.int64)
    blocks = _even_blocks(x.shape[1], input_blocks or 1)
    tr, va = _split(y, validation_fraction, seed)
    tr, va = tr[_subsample(y[tr], max_train, seed)], va[_subsample(y[va], max_val, seed)]
    x_tr, x_va = _standardize(x[tr], x[va], axis=0)
    return Dataset(x_tr, y[tr], x_va, y[va], (x.shape[1],), 2, blocks, "generated-attn")


class _CifarUnpickler(pickle.Unpickler):
    """The official CIFAR-10 batches are Python pickles, so reading them runs the pickle VM; a
    tampered archive could name any callable (os.system, ...). Only the numpy functions that
    rebuild an ndarray are resolved, plus `_codecs.encode`, which Python 3 writes for bytes in a
    protocol-2 pickle (the pure str -> bytes codec); dicts, lists and ints need no global."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name} from a CIFAR-10 batch")
        if module == "_codecs":
            import codecs

            return codecs.encode
        if name == "_reconstruct":
            try:
                from numpy._core.multiarray import _reconstruct
            except ImportError:  # numpy < 2
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        return getattr(np, name)


def read_cifar_batch(raw: bytes, where: str = "batch") -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (n,3,32,32), labels int64) from one pickled batch, via the restricted unpickler."""
    try:
        batch = _CifarUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except pickle.UnpicklingError as err:
        raise DataError(f"{where}: {err}") from err
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{where}: not a CIFAR-10 batch (needs a dict with b'data' and b'labels')")
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise DataError(f"{where}: b'data' is {list(data.shape)} with {len(labels)} labels, expected (n, 3072) and n labels")
    return data.reshape(-1, 3, 32, 32), labels


@register_source("cifar10", "image", {"url": CIFAR10_URL, "file": CIFAR10_FILE, "md5": CIFAR10_MD5})
def prepare_cifar10(path, validation_fraction=0.2, seed=0, max_train=None, max_val=None) -> Dataset:
    """The 50k official training images, split seeded and stratified (0.2 gives the study's 40k/10k);
    the test batch is never read. Per-channel standardization with training statistics."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: CIFAR-10 archive not found (download {CIFAR10_URL})")
    images, labels = [], []
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in CIFAR10_TRAIN_MEMBERS:
                try:
                    f = tar.extractfile(member)
                except KeyError:
                    f = None
                if f is None:
                    raise DataError(f"{path}: member {member} missing; expected the python version {CIFAR10_FILE}")
                x, y = read_cifar_batch(f.read(), f"{path}:{member}")
                images.append(x)
                labels.append(y)
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataError(f"{path}: not a readable {CIFAR10_FILE} ({err})") from err
    x, y = np.concatenate(images), np.concatenate(labels)
    tr, va = _split(y, validation_fraction, seed)
    tr, va = tr[_subsample(y[tr], max_train, seed)], va[_subsample(y[va], max_val, seed)]
    x_tr = x[tr].astype(np.float32) / 255.0
    x_va = x[va].astype(np.float32) / 255.0
    x_tr, x_va = _standardize(x_tr, x_va, axis=(0, 2, 3))
    return Dataset(x_tr, y[tr], x_va, y[va], (3, 32, 32), 10, (), "cifar10")


def _attn_labels(frame, path, key) -> np.ndarray:
    """The `AUC` column of y_* is already the binary class: CANDLE's Pilot1/Attn/attn_baseline_keras2.py
    (ECP-CANDLE/Benchmarks) uses `Y_train = _Y_train['AUC']` directly as the to_categorical input,
    and attn.py `load_data` notes `df['AUC'].astype('int')`. A continuous AUC would need a
    threshold the study does not state, so it is refused rather than guessed."""
    if "AUC" not in frame.columns:
        raise DataError(f"{path}: {key} has no 'AUC' column (columns: {list(frame.columns)[:10]})")
    auc = frame["AUC"].to_numpy()
    if not np.isin(auc, (0, 1)).all():
        raise DataError(f"{path}: {key}['AUC'] is not binary 0/1; expected the pre-binarized CANDLE file")
    return auc.astype(np.int64)


@register_source("candle-attn", "tabular", {"url": ATTN_URL, "file": ATTN_FILE, "md5": ATTN_MD5})
def prepare_attn(path, validation_fraction=None, seed=0, input_blocks=None, max_train=None, max_val=None) -> Dataset:
    """CANDLE's own train/validation split (test unused; `validation_fraction` is ignored). Features are kept as stored: attn.py's
    `load_data` assumes the store is already scaled and does not rescale. The x_*_0 and x_*_1
    frames become the two input blocks; `input_blocks` instead cuts the concatenated features into
    that many contiguous, near-equal blocks. Rows are chosen (stratified) before the features
    are read into float32, one frame at a time, to bound memory on the 4 GB file."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: ATTN store not found (download {ATTN_URL})")
    try:
        store = pd.HDFStore(path, mode="r")
    except Exception as err:
        raise DataError(f"{path}: not a readable pandas HDF5 store ({err})") from err
    with store:
        keys = {k.lstrip("/") for k in store.keys()}
        needed = ["x_train_0", "x_train_1", "x_val_0", "x_val_1", "y_train", "y_val"]
        missing = [k for k in needed if k not in keys]
        if missing:
            raise DataError(f"{path}: missing key(s) {missing} of a top_21_1fold store")
        out, widths = {}, None
        for part, limit in (("train", max_train), ("val", max_val)):
            y = _attn_labels(store[f"y_{part}"], path, f"y_{part}")
            rows = _subsample(y, limit, seed)
            xs = []
            for b in (0, 1):
                frame = store[f"x_{part}_{b}"]
                if len(frame) != len(y):
                    raise DataError(f"{path}: x_{part}_{b} has {len(frame)} rows, y_{part} has {len(y)}")
                if len(rows) < len(frame):
                    frame = frame.iloc[rows]
                xs.append(frame.to_numpy(dtype=np.float32))
                del frame
            w = tuple(x.shape[1] for x in xs)
            if widths is not None and w != widths:
                raise DataError(f"{path}: x_val block widths {w} differ from x_train's {widths}")
            widths = w
            out[part] = (np.concatenate(xs, axis=1), y[rows])
    features = sum(widths)
    blocks = widths if input_blocks is None else _even_blocks(features, input_blocks)
    (x_tr, y_tr), (x_va, y_va) = out["train"], out["val"]
    return Dataset(x_tr, y_tr, x_va, y_va, (features,), 2, blocks, "candle-attn")


def prepare(source, input=None, validation_fraction=0.2, seed=0, input_blocks=None, max_train=None, max_val=None) -> Dataset:
    src = get_source(source)
    if src.download and input is None:
        raise DataError(f"source {source!r} needs --input (the downloaded {src.download['file']})")
    if not src.download and input is not None:
        raise DataError(f"source {source!r} is embedded (no download) and takes no --input")
    options = dict(validation_fraction=validation_fraction, seed=seed, max_train=max_train, max_val=max_val)
    if input_blocks is not None:
        if src.kind != "tabular":
            raise DataError(f"input_blocks applies to tabular sources only, not {source!r}")
        options["input_blocks"] = input_blocks
    return src.prepare(input, **options) if src.download else src.prepare(**options)


# ---------------------------------------------------------------- CLI


def _prepare_cmd(args) -> int:
    try:
        ds = prepare(
            args.source,
            input=args.input,
            validation_fraction=args.validation_fraction,
            seed=args.seed,
            input_blocks=args.input_blocks,
            max_train=args.max_train,
            max_val=args.max_val,
        )
        save(ds, args.out)
    except DataError as err:
        print(f"evotrace data prepare: {err}", file=sys.stderr)
        return 1
    print(
        f"{args.out}: {ds.source} train {ds.x_train.shape} val {ds.x_val.shape} "
        f"classes {ds.num_classes} blocks {list(ds.blocks)}"
    )
    return 0


def _verify_cmd(args) -> int:
    algorithm, expected = ("md5", args.md5) if args.md5 else ("sha256", args.sha256)
    try:
        digest = verify(args.input, expected, algorithm)
    except DataError as err:
        print(f"evotrace data verify: {err}", file=sys.stderr)
        return 1
    print(f"{args.input}: {algorithm} {digest} OK")
    return 0


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise ValueError(text)
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def register(sub) -> None:
    data = sub.add_parser("data", help="prepare and verify datasets").add_subparsers(dest="data_cmd", required=True)
    p = data.add_parser("prepare", help="write a dataset .npz (train/validation split, scaled, with metadata)")
    p.add_argument("--source", required=True, choices=sorted(SOURCES))
    p.add_argument("--input", help="downloaded file: cifar-10-python.tar.gz or top_21_1fold_001.h5")
    p.add_argument("--validation-fraction", type=_fraction, default=0.2, help="ignored by candle-attn, which ships its split")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--input-blocks", type=_positive, help="tabular: number of contiguous feature blocks")
    p.add_argument("--max-train", type=_positive, help="keep a seeded stratified subset of this many training rows")
    p.add_argument("--max-val", type=_positive, help="same for the validation rows")
    p.add_argument("--out", required=True, help="resources/data/NAME.npz")
    p.set_defaults(func=_prepare_cmd)
    v = data.add_parser("verify", help="check a downloaded file against its checksum")
    v.add_argument("--input", required=True)
    digest = v.add_mutually_exclusive_group(required=True)
    digest.add_argument("--sha256")
    digest.add_argument("--md5", help=f"e.g. {CIFAR10_MD5} for {CIFAR10_FILE}")
    v.set_defaults(func=_verify_cmd)
