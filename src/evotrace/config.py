"""Study configuration: the JSON schema (shared with the Snakefile's `validate`) plus the checks a
schema cannot express, such as s < p < N or a run naming a dataset that does not exist."""

from __future__ import annotations

import re
from importlib import resources

import yaml

IMAGE_SOURCES = {"sklearn-digits", "cifar10"}
TABULAR_SOURCES = {"sklearn-breast-cancer", "generated-attn", "candle-attn"}
RESERVED_RUN_NAMES = {"traces", "tables", "figures"}  # sibling folders of the runs under results/<study>/


class ConfigError(ValueError):
    """A configuration value that is well-typed but inconsistent; the message names the key."""


def schema_path() -> str:
    return str(resources.files("evotrace") / "schemas" / "config.schema.yaml")


def load_schema() -> dict:
    return yaml.safe_load(resources.files("evotrace").joinpath("schemas/config.schema.yaml").read_text())


def replicate_name(run: str, seed: int) -> str:
    return f"{run}-seed{seed}"


def variant_of(run: str) -> str:
    """The run a replicate was expanded from (the inverse of replicate_name); other names are their own."""
    return re.sub(r"-seed\d+$", "", run)


def expand_seeds(config: dict) -> dict:
    """Replace, in place and in order, every run that lists `seeds` by one run per seed named
    <run>-seed<k> with `seed: k`, so that replicates are ordinary runs everywhere downstream.
    Runs without `seeds` are kept; expanding twice changes nothing."""
    runs = {}
    for name, run in config["runs"].items():
        if "seeds" not in run:
            runs[name] = run
            continue
        if "seed" in run:
            raise ConfigError(f"runs.{name}: give either seed or seeds, not both")
        for seed in run["seeds"]:
            replicate = replicate_name(name, seed)
            if replicate in config["runs"] or replicate in runs:
                raise ConfigError(f"runs.{name}.seeds: replicate {replicate!r} clashes with another run")
            runs[replicate] = {**{k: v for k, v in run.items() if k != "seeds"}, "seed": int(seed)}
    config["runs"] = runs
    return config


def check(config: dict) -> dict:
    """Expand `seeds` replicates (expand_seeds, in place), then raise ConfigError on the first
    cross-key inconsistency of a schema-valid config."""
    expand_seeds(config)
    search = config["search"]
    n, p, s = search["candidates"], search["population"], search["sample"]
    if not s < p < n:
        raise ConfigError(f"search: Algorithm 1 needs sample < population < candidates, got s={s}, p={p}, N={n}")
    datasets = config["datasets"]
    for name, dataset in datasets.items():
        if "input_blocks" in dataset and dataset["source"] not in TABULAR_SOURCES:
            raise ConfigError(f"datasets.{name}.input_blocks: applies to tabular sources only, not {dataset['source']!r}")
    for name, run in config["runs"].items():
        if "seed" not in run:
            raise ConfigError(f"runs.{name}: needs seed (or seeds: a list of replicate seeds)")
        if name in RESERVED_RUN_NAMES:
            raise ConfigError(f"runs.{name}: the name is reserved for results/<study>/{name}/; rename the run")
        if run["dataset"] not in datasets:
            raise ConfigError(f"runs.{name}.dataset: {run['dataset']!r} is not one of datasets {sorted(datasets)}")
        source = datasets[run["dataset"]]["source"]
        wanted = IMAGE_SOURCES if run["space"] == "nb201" else TABULAR_SOURCES
        if source not in wanted:
            raise ConfigError(
                f"runs.{name}: space {run['space']!r} needs a dataset from {sorted(wanted)}, "
                f"{run['dataset']!r} is {source!r}"
            )
        options = run.get("space_options", {})
        wrong = sorted(set(options) - ({"C", "N"} if run["space"] == "nb201" else {"widths", "activations"}))
        if wrong:
            raise ConfigError(f"runs.{name}.space_options: {wrong} do not apply to space {run['space']!r}")
        if "widths" in options and not options["widths"][0] <= options["widths"][1]:
            raise ConfigError(f"runs.{name}.space_options.widths: first {options['widths'][0]} > last {options['widths'][1]}")
        weights = run.get("mutation", search.get("mutation", {})).get("positions")
        if isinstance(weights, list) and not any(weights):
            raise ConfigError(f"runs.{name}.mutation.positions: weights are all zero")
        quanta = run.get("scheduling", search.get("scheduling", {})).get("quanta", 1)
        workers = run.get("workers", search["workers"])
        if quanta > workers:
            where = f"runs.{name}.workers" if "workers" in run else "search.workers"
            raise ConfigError(f"runs.{name}.scheduling.quanta: {quanta} exceeds {where}={workers}")
        if not s < p < run.get("candidates", n):
            raise ConfigError(f"runs.{name}.candidates: Algorithm 1 needs sample < population < candidates, "
                              f"got s={s}, p={p}, N={run['candidates']}")
        evaluation = run.get("evaluation", {"kind": "train"})
        if "model" in evaluation and evaluation["kind"] != "simulated":
            raise ConfigError(f"runs.{name}.evaluation.model: applies to kind 'simulated' only")
    analysis = config["analysis"]
    for run in analysis.get("trie", {}).get("runs", []):
        if run not in config["runs"]:
            raise ConfigError(f"analysis.trie.runs: {run!r} is not one of runs {sorted(config['runs'])}")
    late = [t for t in analysis.get("snapshots", []) if t > n]
    if late:
        raise ConfigError(f"analysis.snapshots: {late} exceed search.candidates={n}")
    return config
