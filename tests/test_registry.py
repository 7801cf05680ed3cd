"""The registries of search spaces and dataset sources: an unknown name is an error that lists the known
ones, and a space added from outside the package (one module, one entry point) runs the whole pipeline:
setup, a real MPI search with transfer, the consolidated trace and an analysis."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from evotrace import config as cfg
from evotrace import data
from evotrace.spaces import SPACES, UnknownSpace, known_spaces, make_space

ROOT = Path(__file__).resolve().parents[1]
EVOTRACE = [sys.executable, "-m", "evotrace.cli"]
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")

# A space outside the package: three variable nodes (activation, then two hidden widths) of an MLP
# over flattened images. It declares its dataset kind and its config options with their defaults.
TOY_SPACE = '''
from torch import nn

from evotrace.spaces import SearchSpace

ACTIVATIONS = (nn.ReLU, nn.Tanh)


class ToySpace(SearchSpace):
    name = "toy"
    dataset_kind = "image"
    options_schema = {"type": "object", "additionalProperties": False,
                      "properties": {"hidden": {"type": "array", "items": {"type": "integer", "minimum": 1},
                                                "minItems": 1, "default": [8, 16]}}}

    def __init__(self, hidden=(8, 16), input_shape=(1, 8, 8), num_classes=10):
        self.hidden, self.input_shape, self.num_classes = list(hidden), list(input_shape), int(num_classes)

    @property
    def node_names(self):
        return ["activation", "width0", "width1"]

    @property
    def num_choices(self):
        return [len(ACTIVATIONS), len(self.hidden), len(self.hidden)]

    def options(self):
        return {"hidden": self.hidden, "input_shape": self.input_shape, "num_classes": self.num_classes}

    def _build(self, seq):
        act, w0, w1 = ACTIVATIONS[seq[0]], self.hidden[seq[1]], self.hidden[seq[2]]
        features = 1
        for d in self.input_shape:
            features *= d
        return nn.Sequential(nn.Flatten(), nn.Linear(features, w0), act(), nn.Linear(w0, w1), act(),
                             nn.Linear(w1, self.num_classes))

    def _tensor_positions(self, seq, names):
        upstream = {"1": {0, 1}, "3": {0, 1, 2}, "5": {0, 1, 2}}
        return {n: frozenset(upstream[n.split(".")[0]]) for n in names}
'''


def _toy_package(where: Path) -> Path:
    """The toy space as an installed distribution: its module and an `evotrace.spaces` entry point."""
    where.mkdir(parents=True, exist_ok=True)
    (where / "toyspace.py").write_text(TOY_SPACE)
    info = where / "evotrace_toy-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: evotrace-toy\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[evotrace.spaces]\ntoy = toyspace:ToySpace\n")
    return where


def _study(space="nb201", source="sklearn-digits") -> dict:
    return {
        "study": "reg", "datasets": {"d": {"source": source}},
        "search": {"candidates": 10, "population": 4, "sample": 2, "workers": 2},
        "training": {}, "transfer": {},
        "runs": {"r": {"space": space, "dataset": "d", "epochs": 1, "seed": 0}},
        "analysis": {"snapshots": [5]},
    }


def test_unknown_space_lists_the_known_ones():
    with pytest.raises(cfg.ConfigError, match=r"^runs\.r\.space: unknown search space 'darts'; known: \['attn', 'nb201'"):
        cfg.validate(_study(space="darts"))
    with pytest.raises(UnknownSpace, match=r"unknown search space 'resnet'; known: \['attn', 'nb201'"):
        make_space("resnet")


def test_unknown_dataset_source_lists_the_known_ones():
    known = r"\['candle-attn', 'cifar10', 'generated-attn', 'sklearn-breast-cancer', 'sklearn-digits'\]"
    with pytest.raises(cfg.ConfigError, match=rf"^datasets\.d\.source: unknown dataset source 'mnist'; known: {known}"):
        cfg.validate(_study(source="mnist"))
    with pytest.raises(data.DataError, match=rf"unknown dataset source 'mnist'; known: {known}"):
        data.prepare("mnist")


def test_a_space_takes_only_datasets_of_its_kind():
    with pytest.raises(cfg.ConfigError, match=r"runs\.r: space 'attn' needs a dataset from \['candle-attn', 'generated-attn', "
                                              r"'sklearn-breast-cancer'\], 'd' is 'sklearn-digits'"):
        cfg.validate(_study(space="attn"))


def test_space_options_are_checked_and_completed_by_the_space():
    config = cfg.validate(_study())
    assert config["runs"]["r"]["space_options"] == {"C": 16, "N": 5}  # NB201Space.options_schema defaults
    bad = _study()
    bad["runs"]["r"]["space_options"] = {"C": 0}
    with pytest.raises(cfg.ConfigError, match=r"^runs\.r\.space_options\.C: 0 is less than the minimum of 1"):
        cfg.validate(bad)


@pytest.mark.slow
def test_setup_names_the_bad_key_without_a_traceback(tmp_path):
    config = _study()
    config["search"]["population"] = "4"
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(config))
    npz = tmp_path / "d.npz"
    data.save(data.prepare("sklearn-digits", max_train=100, max_val=50), npz)
    proc = subprocess.run([*EVOTRACE, "setup", "--config-json", str(path), "--run", "r", "--data", str(npz),
                           "--out", str(tmp_path / "spec.json")], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "search.population: '4' is not of type 'integer'" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_plugin_spaces_are_listed(tmp_path):
    """`known_spaces` (the CLI's choices, the error messages) loads entry points: a fresh process sees the toy."""
    where = _toy_package(tmp_path / "site")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(where), os.environ.get("PYTHONPATH"))))}
    out = subprocess.run([sys.executable, "-c", "from evotrace.spaces import known_spaces; print(known_spaces())"],
                         capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == "['attn', 'nb201', 'toy']"
    assert "toy" not in known_spaces()  # this process has no such distribution on its path


@pytest.mark.mpi
def test_toy_space_end_to_end(tmp_path, monkeypatch):
    """Registered only through its entry point, the toy space goes through `evotrace setup`, a real
    mpiexec search (2 workers, transfer on), `evotrace consolidate` and `evotrace analyze --rq rq1`."""
    if MPIEXEC is None:
        pytest.skip("no mpiexec")
    where = _toy_package(tmp_path / "site")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(where), os.environ.get("PYTHONPATH"))))}

    def run(*args, launcher=()):
        proc = subprocess.run([*launcher, *EVOTRACE, *args], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    run("data", "prepare", "--source", "sklearn-digits", "--max-train", "300", "--max-val", "150",
        "--out", str(tmp_path / "digits.npz"))
    config = {
        "study": "toy", "datasets": {"digits": {"source": "sklearn-digits"}},
        "search": {"candidates": 16, "population": 6, "sample": 2, "workers": 2},
        "training": {"batch_size": 32}, "transfer": {"cache": {"policy": "lru"}},
        "runs": {"toy": {"space": "toy", "space_options": {"hidden": [4, 8]}, "dataset": "digits", "epochs": 1,
                         "seed": 3}},
        "analysis": {"snapshots": [8, 16], "trie": {"runs": ["toy"]}, "prefix_len": 1},
    }
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(config))
    spec = tmp_path / "toy" / "spec.json"
    out = run("setup", "--config-json", str(study), "--run", "toy", "--data", str(tmp_path / "digits.npz"),
              "--out", str(spec)).stdout
    assert "space toy with 3 variable nodes, size 8" in out
    assert json.loads(spec.read_text())["space_options"] == {"hidden": [4, 8], "input_shape": [1, 8, 8], "num_classes": 10}

    run("search", "--spec", str(spec), "--out-dir", str(spec.parent), launcher=(MPIEXEC, "-n", "3"))
    traces = tmp_path / "traces"
    run("consolidate", "--inputs", str(spec.parent / "candidates.parquet"),
        "--tensor-reads", str(spec.parent / "tensor_reads.parquet"), "--out-dir", str(traces))
    candidates = pd.read_parquet(traces / "candidates.parquet")
    assert len(candidates) == 16 and (candidates["status"] == "ok").all()
    assert candidates["arch_seq"].map(len).eq(3).all() and candidates["quality"].between(0, 1).all()
    reads = pd.read_parquet(traces / "tensor_reads.parquet")
    assert len(reads) and (reads["position"] < candidates.set_index("job_id").loc[reads["job_id"], "prefix_len"].to_numpy()).all()

    monkeypatch.syspath_prepend(str(where))  # the analysis' config: validated here, where the toy is registered too
    from toyspace import ToySpace

    monkeypatch.setitem(SPACES, "toy", ToySpace)
    (tmp_path / "config.json").write_text(json.dumps(cfg.validate(yaml.safe_load(study.read_text()))))
    run("analyze", "--rq", "rq1", "--traces-dir", str(traces), "--config-json", str(tmp_path / "config.json"),
        "--out-dir", str(tmp_path / "tables"))
    frequency = pd.read_csv(tmp_path / "tables" / "choice_frequency.csv")
    assert set(frequency["run"]) == {"toy"} and len(frequency)
