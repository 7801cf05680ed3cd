"""Study configuration: the shipped configs pass `evotrace.config.validate` (the one check the Snakefile
and `evotrace setup` run: schema with defaults, then the cross-key checks); each broken variant of the
default fails with a message that starts with the offending key."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml
from evotrace import config as cfg

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = [p for p in (ROOT / "config" / "config.yaml", ROOT / "config" / "paper.yaml") if p.exists()]


def _validate(config: dict) -> dict:
    return cfg.validate(config)


@pytest.fixture(scope="module")
def default() -> dict:
    """The default study with its `seeds` replicates expanded (attn -> attn-seed1, attn-seed2)."""
    return cfg.expand_seeds(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_config_is_valid(path):
    config = _validate(yaml.safe_load(path.read_text()))
    assert config["search"]["torch_threads"] >= 1  # schema defaults were filled in


def test_defaults_filled(default):
    config = _validate(copy.deepcopy(default))
    assert config["training"]["quality"] == "val_accuracy"
    assert config["transfer"]["skip_store"]["enabled"] is False
    assert config["runs"]["attn-seed1"]["transfer"] is True


def test_seeds_expand_to_one_run_per_replicate(default):
    config = copy.deepcopy(default)
    config["runs"] = {"one": {**default["runs"]["nb201-short"]}, "rep": {**default["runs"]["attn-seed1"]}}
    del config["runs"]["rep"]["seed"]
    config["runs"]["rep"]["seeds"] = [4, 7]
    config["analysis"]["trie"]["runs"] = ["one"]
    out = _validate(config)
    assert list(out["runs"]) == ["one", "rep-seed4", "rep-seed7"]
    assert [out["runs"][r]["seed"] for r in out["runs"]] == [1, 4, 7]
    assert "seeds" not in out["runs"]["rep-seed7"] and out["runs"]["rep-seed7"]["dataset"] == "attn_like"
    assert cfg.validate(copy.deepcopy(out)) == out  # validating twice changes nothing


def test_default_runs_have_their_own_seeds(default):
    runs = _validate(copy.deepcopy(default))["runs"]
    assert list(runs) == ["nb201-short", "nb201-long", "nb201-short-scratch", "attn-seed1", "attn-seed2"]
    for space in ("nb201", "attn"):  # runs of one space draw different mutations
        seeds = [r["seed"] for r in runs.values() if r["space"] == space]
        assert len(set(seeds)) == len(seeds)


def test_seed_and_seeds_together_are_rejected(default):
    config = copy.deepcopy(default)
    config["runs"]["nb201-short"]["seeds"] = [1, 2]
    with pytest.raises(cfg.ConfigError, match=r"^runs\.nb201-short: give either seed or seeds"):
        cfg.validate(config)


def test_replicate_names_must_not_clash(default):
    config = copy.deepcopy(default)
    config["runs"]["nb201-short-seed1"] = {**default["runs"]["nb201-short"]}
    config["runs"]["x"] = {**default["runs"]["nb201-long"]}
    config["runs"]["nb201-short"] = {k: v for k, v in default["runs"]["nb201-short"].items() if k != "seed"}
    config["runs"]["nb201-short"]["seeds"] = [1]
    with pytest.raises(cfg.ConfigError, match="clashes"):
        cfg.validate(config)


def test_dataset_quality_scores_its_runs(default):
    from evotrace.runspec import training_of

    config = copy.deepcopy(default)
    del config["datasets"]["digits"]["quality"]
    config = _validate(config)
    assert config["training"]["quality"] == "val_accuracy"
    assert training_of(config, "attn_like")["quality"] == "val_auc"
    assert training_of(config, "digits")["quality"] == "val_accuracy"  # the training default
    assert training_of(config, "attn_like")["batch_size"] == config["training"]["batch_size"]


def _set(path: str, value):
    def mutate(c):
        *parents, leaf = path.split(".")
        node = c
        for key in parents:
            node = node[key]
        node[leaf] = value

    return mutate


def _delete(path: str):
    def mutate(c):
        *parents, leaf = path.split(".")
        node = c
        for key in parents:
            node = node[key]
        del node[leaf]

    return mutate


def _add_run(name: str, **fields):
    def mutate(c):
        c["runs"][name] = {"space": "nb201", "dataset": "digits", "epochs": 1, "seed": 0, **fields}

    return mutate


# (id, mutation, exception raised, regex the message must contain: it starts with the key)
SCHEMA = CHECK = cfg.ConfigError
INVALID = [
    ("unknown-top-level-key", _set("studdy", "x"), SCHEMA, r"^config: .*'studdy' was unexpected"),
    ("missing-section", _delete("training"), SCHEMA, r"^config: 'training' is a required property"),
    ("unknown-search-key", _set("search.popuation", 10), SCHEMA, r"^search: .*'popuation' was unexpected"),
    ("population-wrong-type", _set("search.population", "100"), SCHEMA, r"^search\.population: '100' is not of type 'integer'"),
    ("negative-candidates", _set("search.candidates", -5), SCHEMA, r"^search\.candidates: -5 is less than the minimum of 1"),
    ("sample-below-two", _set("search.sample", 1), SCHEMA, r"^search\.sample: 1 is less than the minimum of 2"),
    ("sample-not-below-population", _set("search.sample", 100), CHECK, r"search: .*sample < population < candidates, got s=100, p=100"),
    ("population-not-below-candidates", _set("search.population", 1000), CHECK, r"search: .*got s=5, p=1000, N=1000"),
    ("run-unknown-dataset", _set("runs.nb201-short.dataset", "mnist"), CHECK, r"runs\.nb201-short\.dataset: 'mnist' is not one of datasets"),
    ("run-unknown-space", _set("runs.nb201-short.space", "darts"), CHECK, r"^runs\.nb201-short\.space: unknown search space 'darts'; known: \['attn', 'nb201'"),
    ("nb201-on-tabular", _set("runs.nb201-short.dataset", "attn_like"), CHECK, r"runs\.nb201-short: space 'nb201' needs a dataset from .*'attn_like' is 'generated-attn'"),
    ("attn-on-images", _set("runs.attn-seed1.dataset", "digits"), CHECK, r"runs\.attn-seed1: space 'attn' needs a dataset from"),
    ("space-options-wrong-space", _set("runs.nb201-short.space_options", {"C": 8, "widths": [16, 96, 16]}), CHECK, r"^runs\.nb201-short\.space_options: .*'widths' was unexpected"),
    ("space-options-unknown", _set("runs.attn-seed1.space_options", {"depth": 3}), CHECK, r"^runs\.attn-seed1\.space_options: .*'depth' was unexpected"),
    ("widths-first-above-last", _set("runs.attn-seed1.space_options.widths", [96, 16, 16]), CHECK, r"^runs\.attn-seed1\.space_options: widths: first 96 > last 16"),
    ("widths-length", _set("runs.attn-seed1.space_options.widths", [16, 96]), CHECK, r"^runs\.attn-seed1\.space_options\.widths: \[16, 96\] is too short"),
    ("bad-activation", _set("runs.attn-seed1.space_options.activations", ["relu", "gelu"]), CHECK, r"^runs\.attn-seed1\.space_options\.activations\.1: 'gelu' is not one of \['linear', 'swish', 'relu', 'tanh', 'sigmoid'\]"),
    ("quanta-above-workers", _set("search.scheduling.quanta", 9), CHECK, r"runs\.nb201-short\.scheduling\.quanta: 9 exceeds search\.workers=8"),
    ("run-quanta-above-workers", _set("runs.attn-seed2.scheduling", {"quanta": 16}), CHECK, r"runs\.attn-seed2\.scheduling\.quanta: 16 exceeds"),
    ("zero-mutation-weights", _set("search.mutation.positions", [0, 0, 0]), CHECK, r"mutation\.positions: weights are all zero"),
    ("bad-mutation-positions", _set("search.mutation.positions", "quadratic"), SCHEMA, r"^search\.mutation\.positions: 'quadratic' is not"),
    ("trie-run-unknown", _set("analysis.trie.runs", ["nb201-short", "nb201-huge"]), CHECK, r"analysis\.trie\.runs: 'nb201-huge' is not one of runs"),
    ("figure-run-unknown", _set("analysis.figure_runs", ["attn-seed1", "attn-seed9"]), CHECK, r"analysis\.figure_runs: 'attn-seed9' is not one of runs"),
    ("snapshot-beyond-candidates", _set("analysis.snapshots", [50, 1001]), CHECK, r"analysis\.snapshots: \[1001\] exceed search\.candidates=1000"),
    ("bad-study-name", _set("study", "my study/1"), SCHEMA, r"^study: 'my study/1' does not match"),
    ("cache-policy-not-in-enum", _set("transfer.cache.policy", "fifo"), SCHEMA, r"^transfer\.cache\.policy: 'fifo' is not one of \['none', 'lru', 'popularity'\]"),
    ("unknown-source", _set("datasets.digits.source", "mnist"), CHECK, r"^datasets\.digits\.source: unknown dataset source 'mnist'; known: \['candle-attn'"),
    ("validation-fraction-one", _set("datasets.digits.validation_fraction", 1.0), SCHEMA, r"^datasets\.digits\.validation_fraction: 1\.0 is greater than or equal to the maximum of 1"),
    ("bad-dataset-name", _set("datasets.my/digits", {"source": "sklearn-digits"}), SCHEMA, r"^datasets: 'my/digits' does not match"),
    ("input-blocks-on-images", _set("datasets.digits.input_blocks", 2), CHECK, r"datasets\.digits\.input_blocks: applies to tabular sources only, not 'sklearn-digits'"),
    ("bad-run-name", _add_run("-x"), SCHEMA, r"^runs: '-x' does not match"),
    ("reserved-run-name", _add_run("traces"), CHECK, r"runs\.traces: the name is reserved"),
    ("run-missing-epochs", _delete("runs.nb201-long.epochs"), SCHEMA, r"^runs\.nb201-long: 'epochs' is a required property"),
    ("skip-threshold-above-one", _set("transfer.skip_store.threshold", 1.5), SCHEMA, r"^transfer\.skip_store\.threshold: 1\.5 is greater than the maximum of 1"),
    ("quality-unknown", _set("training.quality", "val_loss"), SCHEMA, r"^training\.quality: 'val_loss' is not one of"),
    ("train-run-with-model", _set("runs.nb201-long.evaluation", {"kind": "train", "model": "synthetic"}), CHECK, r"^runs\.nb201-long\.evaluation\.model: applies to kind 'simulated' only"),
]


@pytest.mark.parametrize("mutate, error, message", [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_config_rejected(default, mutate, error, message):
    config = copy.deepcopy(default)
    mutate(config)
    with pytest.raises(error) as caught:
        _validate(config)
    text = str(caught.value)
    assert re.search(message, text), f"message does not name the problem:\n{text[:1500]}"


def test_at_least_twelve_invalid_cases():
    assert len(INVALID) >= 12


def test_simulated_runs_with_their_own_workers_and_candidates():
    import yaml

    from evotrace.config import ConfigError, validate

    config = yaml.safe_load(open("config/scale.yaml"))
    validate(config)
    assert {r["workers"] for r in config["runs"].values()} == {39, 256, 1000}
    assert max(r["candidates"] for r in config["runs"].values()) == 100000
    config["runs"]["w39"]["candidates"] = 50
    with pytest.raises(ConfigError, match=r"runs\.w39\.candidates"):
        validate(config)
    config["runs"]["w39"].update(candidates=1000, evaluation={"kind": "train", "model": "synthetic"})
    with pytest.raises(ConfigError, match="kind 'simulated' only"):
        validate(config)


def test_defaults_below_an_absent_section_are_filled(default):
    """Readers index the config (and the run spec built from it) without defaults of their own."""
    from evotrace.runspec import build_spec

    config = copy.deepcopy(default)
    config["transfer"] = {}
    config["runs"]["nb201-short"].pop("space_options", None)
    spec = build_spec(config, "nb201-short", "d.npz", {"input_shape": [1, 8, 8], "num_classes": 10})
    assert config["transfer"] == {"fine_tune_epochs": 0, "skip_store": {"enabled": False, "threshold": 0.01},
                                  "cache": {"policy": "popularity", "capacity_mb": 64, "min_donations": 5}}
    assert spec["transfer"]["cache"] == {**config["transfer"]["cache"], "window": config["search"]["population"]}
    assert spec["evaluation"] == {"kind": "train"} and spec["search"]["stage_boundary"] == "wait"
    assert spec["space_options"]["C"] == 16 and spec["space_options"]["N"] == 5
    assert cfg.defaults("transfer") == config["transfer"]
    assert cfg.defaults("training") == {"batch_size": 128, "optimizer": "sgd", "learning_rate": 0.05, "momentum": 0.9,
                                        "weight_decay": 0.0005, "quality": "val_accuracy"}
