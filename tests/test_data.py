"""Datasets: embedded sets end to end, CIFAR-10 and ATTN parsing on small files of the official
formats written here, the restricted unpickler, checksums and malformed files."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import struct
import tarfile

import numpy as np
import pandas as pd
import pytest

from evotrace import data
from evotrace.cli import main


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "digits.npz"
    assert main(["data", "prepare", "--source", "sklearn-digits", "--validation-fraction", "0.2", "--seed", "0", "--out", str(out)]) == 0
    return data.load(out)


def test_digits_shapes_split_and_scaling(digits):
    assert digits.input_shape == (1, 8, 8) and digits.num_classes == 10 and digits.blocks == ()
    assert digits.source == "sklearn-digits" and data.get_source(digits.source).kind == "image"
    assert digits.x_train.dtype == np.float32 and digits.y_train.dtype == np.int64
    assert len(digits.x_train) + len(digits.x_val) == 1797
    assert len(digits.x_val) == 360
    assert abs(float(digits.x_train.mean())) < 1e-5 and abs(float(digits.x_train.std()) - 1) < 1e-4
    # stratified: every class keeps its share within one row
    train_share = np.bincount(digits.y_train, minlength=10) / len(digits.y_train)
    val_share = np.bincount(digits.y_val, minlength=10) / len(digits.y_val)
    assert np.abs(train_share - val_share).max() < 0.01


def test_digits_split_is_a_partition(digits):
    """Train and validation together are exactly the 1797 images, each used once."""
    from sklearn.datasets import load_digits

    both = np.concatenate([digits.x_train, digits.x_val]).reshape(1797, -1).astype(np.float64)
    lo, hi = digits.x_train.min(), digits.x_train.max()  # raw pixels 0 and 16 both occur in train
    recovered = np.rint((both - lo) / (hi - lo) * 16).astype(int)
    raw = load_digits().images.reshape(1797, -1).astype(int)
    order = lambda a: a[np.lexsort(a.T[::-1])]  # noqa: E731
    assert np.array_equal(order(recovered), order(raw))
    tr, va = data._split(load_digits().target, 0.2, 0)
    assert not set(tr) & set(va) and len(tr) + len(va) == 1797


def test_seeded_determinism():
    a = data.prepare("sklearn-digits", validation_fraction=0.2, seed=3)
    b = data.prepare("sklearn-digits", validation_fraction=0.2, seed=3)
    c = data.prepare("sklearn-digits", validation_fraction=0.2, seed=4)
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_val, b.y_val)
    assert not np.array_equal(a.y_train, c.y_train)


def test_breast_cancer_blocks_and_standardization(tmp_path):
    out = tmp_path / "bc.npz"
    args = ["data", "prepare", "--source", "sklearn-breast-cancer", "--input-blocks", "4", "--seed", "1", "--out", str(out)]
    assert main(args) == 0
    ds = data.load(out)
    assert ds.input_shape == (30,) and ds.num_classes == 2
    assert ds.blocks == (8, 8, 7, 7) and sum(ds.blocks) == 30
    assert set(np.unique(ds.y_train)) == {0, 1}
    assert np.allclose(ds.x_train.mean(axis=0), 0, atol=1e-5)
    assert np.allclose(ds.x_train.std(axis=0), 1, atol=1e-4)
    assert not np.allclose(ds.x_val.mean(axis=0), 0, atol=1e-3)  # scaled with train stats only
    assert abs(ds.y_train.mean() - ds.y_val.mean()) < 0.02


def test_generated_attn_is_seeded_imbalanced_and_blocked(tmp_path):
    out = tmp_path / "attn_like.npz"
    args = ["data", "prepare", "--source", "generated-attn", "--validation-fraction", "0.4", "--input-blocks", "2",
            "--max-train", "600", "--seed", "0", "--out", str(out)]
    assert main(args) == 0
    ds = data.load(out)
    assert ds.source == "generated-attn" and ds.input_shape == (40,) and ds.blocks == (20, 20)
    assert (len(ds.y_train), len(ds.y_val)) == (600, 2400)
    positives = (ds.y_train.sum() + ds.y_val.sum()) / (len(ds.y_train) + len(ds.y_val))
    assert positives == pytest.approx(data.ATTN_POSITIVE_FRACTION, abs=0.01)  # ATTN's 3.61 %, 1 % labels flipped
    again = data.prepare("generated-attn", validation_fraction=0.4, seed=0, input_blocks=2, max_train=600)
    other = data.prepare("generated-attn", validation_fraction=0.4, seed=1, input_blocks=2, max_train=600)
    assert np.array_equal(ds.x_val, again.x_val) and not np.array_equal(ds.x_val, other.x_val)


def test_max_train_subsamples_stratified():
    ds = data.prepare("sklearn-breast-cancer", input_blocks=2, max_train=100, max_val=50)
    assert len(ds.y_train) == 100 and len(ds.y_val) == 50
    assert ds.blocks == (15, 15)


def test_prepare_argument_errors():
    with pytest.raises(data.DataError, match="needs --input"):
        data.prepare("cifar10")
    with pytest.raises(data.DataError, match="takes no --input"):
        data.prepare("sklearn-digits", input="x.tar.gz")
    with pytest.raises(data.DataError, match="tabular sources only"):
        data.prepare("sklearn-digits", input_blocks=2)
    with pytest.raises(data.DataError, match="input_blocks=31"):
        data.prepare("sklearn-breast-cancer", input_blocks=31)


# ---------------------------------------------------------------- CIFAR-10


def _cifar_tarball(path, per_batch=20, batches=None):
    rng = np.random.default_rng(0)
    batches = batches or {}
    with tarfile.open(path, "w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            raw = batches.get(name)
            if raw is None:
                labels = [int(v) for v in np.arange(per_batch) % 10]
                batch = {
                    b"batch_label": name.encode(),
                    b"labels": labels,
                    b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                    b"filenames": [f"{name}_{i}.png".encode() for i in range(per_batch)],
                }
                raw = pickle.dumps(batch, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


def test_cifar10_parsing(tmp_path):
    tgz = _cifar_tarball(tmp_path / data.CIFAR10_FILE)
    out = tmp_path / "cifar.npz"
    assert main(["data", "prepare", "--source", "cifar10", "--input", str(tgz), "--seed", "2", "--out", str(out)]) == 0
    ds = data.load(out)
    assert ds.input_shape == (3, 32, 32) and ds.num_classes == 10 and ds.blocks == ()
    assert len(ds.y_train) == 80 and len(ds.y_val) == 20  # test_batch unused
    assert np.bincount(ds.y_val).tolist() == [2] * 10
    per_channel = ds.x_train.transpose(1, 0, 2, 3).reshape(3, -1)
    assert np.allclose(per_channel.mean(axis=1), 0, atol=1e-4)
    assert np.allclose(per_channel.std(axis=1), 1, atol=1e-4)


def test_cifar10_layout_is_channel_first(tmp_path):
    data_ = np.zeros((10, 3072), dtype=np.uint8)
    data_[:, :1024] = 255  # red plane
    raw = pickle.dumps({b"data": data_, b"labels": list(range(10))}, protocol=2)
    x, y = data.read_cifar_batch(raw)
    assert x.shape == (10, 3, 32, 32) and (x[:, 0] == 255).all() and (x[:, 1:] == 0).all()
    assert y.tolist() == list(range(10))


def test_cifar_batch_written_by_numpy_1():
    """The official files name numpy.core.multiarray (numpy 1.x); numpy 2 writes numpy._core."""
    raw = pickle.dumps({b"data": np.full((2, 3072), 7, dtype=np.uint8), b"labels": [3, 4]}, protocol=3)
    raw = raw.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    assert b"numpy.core.multiarray\n_reconstruct" in raw
    x, y = data.read_cifar_batch(raw)
    assert (x == 7).all() and y.tolist() == [3, 4]


def test_cifar_batch_in_python2_pickle_format():
    """Hand-assembled protocol-2 opcodes as Python 2's cPickle wrote the official batches:
    8-bit strings (SHORT_BINSTRING/BINSTRING) and numpy.core.multiarray._reconstruct."""
    pixels = bytes(range(256)) * 24  # two images
    array = (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R"
        b"(K\x01K\x02M\x00\x0c\x86cnumpy\ndtype\nU\x02u1K\x00K\x01\x87R"
        b"(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89T"
        + struct.pack("<I", len(pixels)) + pixels + b"tb"
    )
    raw = b"\x80\x02}(U\x04data" + array + b"U\x06labels](K\x01K\x02eu."
    x, y = data.read_cifar_batch(raw)
    assert x.shape == (2, 3, 32, 32) and y.tolist() == [1, 2]
    assert x.reshape(2, -1)[0, :3].tolist() == [0, 1, 2] and x.reshape(2, -1)[1, -1] == 255


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar_unpickler_refuses_malicious_pickle(tmp_path):
    marker = tmp_path / "pwned"
    raw = pickle.dumps({b"data": _Evil(marker), b"labels": [0]}, protocol=2)
    with pytest.raises(data.DataError, match=r"refusing to load global (posix|os|nt)\.system"):
        data.read_cifar_batch(raw)
    tgz = _cifar_tarball(tmp_path / "evil.tar.gz", batches={"data_batch_3": raw})
    with pytest.raises(data.DataError, match="data_batch_3.*refusing"):
        data.prepare("cifar10", input=str(tgz))
    assert not marker.exists()
    with pytest.raises(data.DataError, match="builtins.eval"):
        data.read_cifar_batch(b"cbuiltins\neval\n(S'1+1'\ntR.")


def test_cifar_missing_member_and_bad_archive(tmp_path):
    tgz = tmp_path / "partial.tar.gz"
    with tarfile.open(tgz, "w:gz"):
        pass
    with pytest.raises(data.DataError, match="data_batch_1 missing"):
        data.prepare("cifar10", input=str(tgz))
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tarball")
    with pytest.raises(data.DataError, match="junk.tar.gz: not a readable"):
        data.prepare("cifar10", input=str(junk))


# ---------------------------------------------------------------- CANDLE ATTN


def _attn_store(path, n_train=60, n_val=30, widths=(5, 3), auc=None):
    rng = np.random.default_rng(1)
    with pd.HDFStore(path, mode="w") as store:
        for part, n in (("train", n_train), ("val", n_val), ("test", n_val)):
            for b, w in enumerate(widths):
                cols = [f"f{b}_{i}" for i in range(w)]
                store.put(f"x_{part}_{b}", pd.DataFrame(rng.normal(size=(n, w)), columns=cols), track_times=False)
            labels = (np.arange(n) % 4 == 0).astype(float) if auc is None else auc(n)
            frame = pd.DataFrame({"AUC": labels, "Sample": [f"s{i}" for i in range(n)]})
            store.put(f"y_{part}", frame, track_times=False)
    return path


def test_attn_parsing(tmp_path):
    h5 = _attn_store(tmp_path / data.ATTN_FILE)
    out = tmp_path / "attn.npz"
    assert main(["data", "prepare", "--source", "candle-attn", "--input", str(h5), "--out", str(out)]) == 0
    ds = data.load(out)
    assert ds.input_shape == (8,) and ds.blocks == (5, 3) and ds.num_classes == 2
    assert len(ds.y_train) == 60 and len(ds.y_val) == 30
    expected = pd.concat([pd.read_hdf(h5, "x_train_0"), pd.read_hdf(h5, "x_train_1")], axis=1)
    assert np.allclose(ds.x_train, expected.to_numpy(np.float32))  # kept as stored, as attn.py does
    assert ds.y_train.tolist() == (np.arange(60) % 4 == 0).astype(int).tolist()


def test_attn_subsample_and_blocks(tmp_path):
    h5 = _attn_store(tmp_path / "a.h5")
    ds = data.prepare("candle-attn", input=str(h5), max_train=20, max_val=12, input_blocks=3, seed=5)
    assert len(ds.y_train) == 20 and len(ds.y_val) == 12
    assert ds.y_train.sum() == 5 and ds.y_val.sum() == 3  # stratified: 1 positive in 4
    assert ds.blocks == (3, 3, 2)
    full = data.prepare("candle-attn", input=str(h5))
    rows = [np.flatnonzero((full.x_train == r).all(axis=1))[0] for r in ds.x_train]
    assert full.y_train[rows].tolist() == ds.y_train.tolist()  # features and labels stay aligned


def test_attn_errors(tmp_path):
    h5 = _attn_store(tmp_path / "cont.h5", auc=lambda n: np.linspace(0, 1, n))
    with pytest.raises(data.DataError, match=r"y_train\['AUC'\] is not binary"):
        data.prepare("candle-attn", input=str(h5))
    partial = tmp_path / "partial.h5"
    with pd.HDFStore(partial, mode="w") as store:
        store.put("x_train_0", pd.DataFrame({"a": [1.0]}), track_times=False)
    with pytest.raises(data.DataError, match=r"partial.h5: missing key\(s\) \['x_train_1'"):
        data.prepare("candle-attn", input=str(partial))


# ---------------------------------------------------------------- checksums and malformed files


def test_verify(tmp_path, capsys):
    f = tmp_path / "blob.bin"
    f.write_bytes(b"evotrace")
    sha = hashlib.sha256(b"evotrace").hexdigest()
    md5 = hashlib.md5(b"evotrace").hexdigest()
    assert data.verify(f, sha) == sha
    assert data.verify(f, md5.upper(), "md5") == md5
    with pytest.raises(data.DataError) as err:
        data.verify(f, "0" * 64)
    assert str(f) in str(err.value) and "expected " + "0" * 64 in str(err.value) and "actual " + sha in str(err.value)
    with pytest.raises(data.DataError, match="not found"):
        data.verify(tmp_path / "nope", sha)
    assert main(["data", "verify", "--input", str(f), "--md5", md5]) == 0
    assert main(["data", "verify", "--input", str(f), "--sha256", "ab" * 32]) == 1
    assert "sha256 mismatch" in capsys.readouterr().err


def test_download_constants():
    assert data.SOURCES["cifar10"].download == {
        "url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "file": "cifar-10-python.tar.gz",
        "md5": "c58f30108f718f92721af3b95e74349a",
    }
    assert data.SOURCES["candle-attn"].download["url"].endswith("/Pilot1/uno/top_21_1fold_001.h5")
    assert data.SOURCES["candle-attn"].download["md5"] is None
    assert {n for n, s in data.SOURCES.items() if s.download is None} == {"sklearn-digits", "sklearn-breast-cancer", "generated-attn"}


def test_load_errors(tmp_path, digits):
    with pytest.raises(data.DataError, match="missing.npz: dataset file not found"):
        data.load(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, x_train=digits.x_train, y_train=digits.y_train)
    with pytest.raises(data.DataError, match=r"bad.npz: missing key\(s\) \['x_val', 'y_val', 'input_shape'"):
        data.load(bad)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"garbage")
    with pytest.raises(data.DataError, match="junk.npz: not a readable dataset"):
        data.load(junk)
    pickled = tmp_path / "pickled.npz"
    fields = {k: getattr(digits, k) for k in ("x_train", "y_train", "x_val", "y_val")}
    np.savez(pickled, **fields, input_shape=[1, 8, 8], num_classes=10, blocks=[], source=np.array([{"a": 1}], dtype=object))
    with pytest.raises(data.DataError, match="pickled.npz: not a readable"):
        data.load(pickled)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, **fields, input_shape=[1, 8, 8], num_classes=5, blocks=[], source="x")
    with pytest.raises(data.DataError, match=r"y_train has labels outside \[0, num_classes=5\)"):
        data.load(wrong)
    sums = tmp_path / "sums.npz"
    bc = data.prepare("sklearn-breast-cancer", input_blocks=2)
    np.savez(sums, x_train=bc.x_train, y_train=bc.y_train, x_val=bc.x_val, y_val=bc.y_val,
             input_shape=[30], num_classes=2, blocks=[10, 10], source="x")
    with pytest.raises(data.DataError, match=r"blocks \[10, 10\] do not sum to the 30 features"):
        data.load(sums)
