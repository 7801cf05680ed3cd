"""The run spec: everything one search needs, resolved from the study config and the dataset so that
the search command reads a single JSON file (`results/<study>/<run>/spec.json`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def training_of(config: dict, dataset: str) -> dict:
    """The training settings of a run: the study's, scored by the dataset's own `quality` when it
    names one (a metric belongs to the task: AUC for an imbalanced one, accuracy for digits)."""
    training = dict(config["training"])
    quality = config["datasets"][dataset].get("quality")
    if quality:
        training["quality"] = quality
    return training


def build_spec(config: dict, run: str, data_path: str, dataset_options: dict) -> dict:
    """`config` is validated (and completed) here; `dataset_options`: the space options the prepared
    dataset fixes (`space_class(name).dataset_options(meta)`), or {} for the space's own defaults."""
    from .config import validate
    from .spaces import make_space

    validate(config)
    r = config["runs"][run]
    search = config["search"]
    space = make_space(r["space"], **r["space_options"], **dataset_options)
    transfer = config["transfer"]
    cache = {**transfer["cache"], **r.get("cache", {})}  # a run may override the study's cache
    cache.setdefault("window", search["population"])
    skip_store = {**transfer["skip_store"], **r.get("skip_store", {})}
    return {
        "study": config["study"],
        "run": run,
        "space": r["space"],
        "space_options": space.options(),
        "num_choices": space.num_choices,
        "space_size": str(space.size),
        "dataset": r["dataset"],
        "data": str(data_path),
        "epochs": r["epochs"],
        "seed": r["seed"],
        "search": {
            "candidates": r.get("candidates", search["candidates"]),
            "population": search["population"],
            "sample": search["sample"],
            "workers": r.get("workers", search["workers"]),
            "torch_threads": search["torch_threads"],
            "mutation": r.get("mutation", search["mutation"]),
            "quanta": r.get("scheduling", search["scheduling"])["quanta"],
            "stage_boundary": search["stage_boundary"],
        },
        "training": training_of(config, r["dataset"]),
        "transfer": {
            "enabled": r["transfer"],
            "fine_tune_epochs": transfer["fine_tune_epochs"],
            "cache": cache,
            "skip_store": skip_store,
        },
        "evaluation": r["evaluation"],
    }


def load_spec(path) -> dict:
    return json.loads(Path(path).read_text())


def write_spec(spec: dict, path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")


def _setup(args) -> int:
    import yaml

    from .config import ConfigError, validate
    from .data import DataError, load
    from .spaces import space_class

    text = Path(args.config_json).read_text()
    config = json.loads(text) if args.config_json.endswith(".json") else yaml.safe_load(text)
    try:
        validate(config)
        if args.run not in config["runs"]:
            raise ConfigError(f"--run: {args.run!r} is not one of runs {sorted(config['runs'])}")
        options = space_class(config["runs"][args.run]["space"]).dataset_options(load(args.data))
        spec = build_spec(config, args.run, args.data, options)
    except (ConfigError, DataError) as err:
        print(f"evotrace setup: {args.config_json}: {err}", file=sys.stderr)
        return 1
    write_spec(spec, args.out)
    print(f"{args.run}: space {spec['space']} with {len(spec['num_choices'])} variable nodes, size {spec['space_size']}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("setup", help="resolve one run of the study into the spec its search reads")
    p.add_argument("--config-json", required=True, help="the study config (JSON or YAML)")
    p.add_argument("--run", required=True)
    p.add_argument("--data", required=True, help="the prepared dataset (.npz)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_setup)
