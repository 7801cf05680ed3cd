"""Study configuration: the JSON schema plus the checks a schema cannot express (s < p < N, a run
naming a dataset that does not exist, a space's own options), and the defaults the schema declares.
`validate` is the one entry point: the Snakefile and `evotrace setup` both call it, and everything
downstream reads a complete config, so no reader keeps a default of its own."""

from __future__ import annotations

import copy
import re
from importlib import resources

import jsonschema
import yaml

from .data import SOURCES, DataError, get_source
from .spaces import UnknownSpace, space_class

RESERVED_RUN_NAMES = {"traces", "tables", "figures"}  # sibling folders of the runs under results/<study>/


class ConfigError(ValueError):
    """A configuration value that is wrong or inconsistent; the message names the key."""


_SCHEMA: dict | None = None


def schema() -> dict:
    global _SCHEMA
    if _SCHEMA is None:
        _SCHEMA = yaml.safe_load(resources.files("evotrace").joinpath("schemas/config.schema.yaml").read_text())
    return _SCHEMA


def _filling(validator_class):
    """A validator that, before checking an object's properties, sets each absent one that has a
    `default` (a deep copy), so that nested defaults below an absent object are filled too."""
    check_properties = validator_class.VALIDATORS["properties"]

    def properties(validator, props, instance, subschema):
        if validator.is_type(instance, "object"):
            for name, prop in props.items():
                if "default" in prop and name not in instance:
                    instance[name] = copy.deepcopy(prop["default"])
        yield from check_properties(validator, props, instance, subschema)

    return jsonschema.validators.extend(validator_class, {"properties": properties})


_FILLING = _filling(jsonschema.Draft202012Validator)


def _where(path) -> str:
    return ".".join(str(p) for p in path)


def fill(instance: dict, schema_: dict, where: str = "") -> dict:
    """Validate `instance` against `schema_` in place, defaults filled; ConfigError names the key."""
    validator = _FILLING(schema_, format_checker=jsonschema.FormatChecker())
    error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
    if error is not None:
        key = ".".join(filter(None, (where, _where(error.absolute_path))))
        raise ConfigError(f"{key or 'config'}: {error.message}")
    return instance


def defaults(section: str) -> dict:
    """The schema defaults of one top-level section (`training`, `transfer`, ...), for code that runs
    without a study config (tests, benchmarks, the simulator)."""
    return fill({}, {**schema()["properties"][section], "$defs": schema()["$defs"]}, section)


def validate(config: dict) -> dict:
    """Check a study config and complete it in place: schema (defaults filled), `seeds` expanded, the
    cross-key checks and each run's space options (the space's own schema). Idempotent."""
    if not isinstance(config, dict):
        raise ConfigError(f"config: expected a mapping of settings, got {type(config).__name__}")
    if isinstance(config.get("runs"), dict) and all(isinstance(r, dict) for r in config["runs"].values()):
        expand_seeds(config)  # first: its message on `seed` with `seeds` is clearer than the schema's
    fill(config, schema())
    return check(config)


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
    """Raise ConfigError on the first cross-key inconsistency of a schema-valid config, defaults
    filled and replicates expanded (`validate` calls it)."""
    search = config["search"]
    n, p, s = search["candidates"], search["population"], search["sample"]
    if not s < p < n:
        raise ConfigError(f"search: Algorithm 1 needs sample < population < candidates, got s={s}, p={p}, N={n}")
    datasets = config["datasets"]
    kinds = {}
    for name, dataset in datasets.items():
        try:
            kinds[name] = get_source(dataset["source"]).kind
        except DataError as err:
            raise ConfigError(f"datasets.{name}.source: {err}") from None
        if "input_blocks" in dataset and kinds[name] != "tabular":
            raise ConfigError(f"datasets.{name}.input_blocks: applies to tabular sources only, not {dataset['source']!r}")
    for name, run in config["runs"].items():
        if "seed" not in run:
            raise ConfigError(f"runs.{name}: needs seed (or seeds: a list of replicate seeds)")
        if name in RESERVED_RUN_NAMES:
            raise ConfigError(f"runs.{name}: the name is reserved for results/<study>/{name}/; rename the run")
        if run["dataset"] not in datasets:
            raise ConfigError(f"runs.{name}.dataset: {run['dataset']!r} is not one of datasets {sorted(datasets)}")
        try:
            space = space_class(run["space"])
        except UnknownSpace as err:
            raise ConfigError(f"runs.{name}.space: {err}") from None
        if kinds[run["dataset"]] != space.dataset_kind:
            wanted = sorted(n for n, s in SOURCES.items() if s.kind == space.dataset_kind)
            raise ConfigError(
                f"runs.{name}: space {run['space']!r} needs a dataset from {wanted}, "
                f"{run['dataset']!r} is {datasets[run['dataset']]['source']!r}"
            )
        options = fill(run.setdefault("space_options", {}), space.options_schema, f"runs.{name}.space_options")
        try:
            space.check_options(options)
        except ValueError as err:
            raise ConfigError(f"runs.{name}.space_options: {err}") from None
        weights = run.get("mutation", search["mutation"])["positions"]
        if isinstance(weights, list) and not any(weights):
            raise ConfigError(f"runs.{name}.mutation.positions: weights are all zero")
        quanta = run.get("scheduling", search["scheduling"])["quanta"]
        workers = run.get("workers", search["workers"])
        if quanta > workers:
            where = f"runs.{name}.workers" if "workers" in run else "search.workers"
            raise ConfigError(f"runs.{name}.scheduling.quanta: {quanta} exceeds {where}={workers}")
        if not s < p < run.get("candidates", n):
            raise ConfigError(f"runs.{name}.candidates: Algorithm 1 needs sample < population < candidates, "
                              f"got s={s}, p={p}, N={run['candidates']}")
        evaluation = run["evaluation"]
        if "model" in evaluation and evaluation["kind"] != "simulated":
            raise ConfigError(f"runs.{name}.evaluation.model: applies to kind 'simulated' only")
    analysis = config["analysis"]
    for key, named in (("trie.runs", analysis["trie"].get("runs", [])), ("figure_runs", analysis.get("figure_runs", []))):
        for run in named:
            if run not in config["runs"]:
                raise ConfigError(f"analysis.{key}: {run!r} is not one of runs {sorted(config['runs'])}")
    late = [t for t in analysis["snapshots"] if t > n]
    if late:
        raise ConfigError(f"analysis.snapshots: {late} exceed search.candidates={n}")
    return config
