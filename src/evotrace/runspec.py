"""The run spec: everything one search needs, resolved from the study config and the dataset so that
the search command reads a single JSON file (`results/<study>/<run>/spec.json`)."""

from __future__ import annotations

import json
from pathlib import Path


def training_of(config: dict, dataset: str) -> dict:
    """The training settings of a run: the study's, scored by the dataset's own `quality` when it
    names one (a metric belongs to the task: AUC for an imbalanced one, accuracy for digits)."""
    training = dict(config.get("training", {}))
    quality = config["datasets"][dataset].get("quality")
    if quality:
        training["quality"] = quality
    return training


def build_spec(config: dict, run: str, data_path: str, dataset_meta: dict) -> dict:
    """`dataset_meta`: input_shape, num_classes and blocks of the prepared dataset."""
    from .spaces import make_space

    r = config["runs"][run]
    search = config["search"]
    options = dict(r.get("space_options", {}))
    if r["space"] == "nb201":
        options["input_shape"] = list(dataset_meta["input_shape"])
    else:
        options["input_blocks"] = list(dataset_meta["blocks"])
    options["num_classes"] = int(dataset_meta["num_classes"])
    space = make_space(r["space"], **options)
    transfer = config.get("transfer", {})
    cache = {**transfer.get("cache", {}), **r.get("cache", {})}  # a run may override the study's cache
    cache.setdefault("window", search["population"])
    skip_store = {"enabled": False, "threshold": 0.01, **transfer.get("skip_store", {}), **r.get("skip_store", {})}
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
            "torch_threads": search.get("torch_threads", 1),
            "mutation": r.get("mutation", search.get("mutation", {"positions": "uniform"})),
            "quanta": r.get("scheduling", search.get("scheduling", {"quanta": 1}))["quanta"],
            "stage_boundary": search.get("stage_boundary", "wait"),
        },
        "training": training_of(config, r["dataset"]),
        "transfer": {
            "enabled": r.get("transfer", True),
            "fine_tune_epochs": transfer.get("fine_tune_epochs", 0),
            "cache": cache,
            "skip_store": skip_store,
        },
        "evaluation": r.get("evaluation", {"kind": "train"}),
    }


def load_spec(path) -> dict:
    return json.loads(Path(path).read_text())


def write_spec(spec: dict, path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")


def _setup(args) -> int:
    import yaml

    from .config import check
    from .data import load

    config = json.loads(Path(args.config_json).read_text()) if args.config_json.endswith(".json") else yaml.safe_load(Path(args.config_json).read_text())
    check(config)
    ds = load(args.data)
    meta = {"input_shape": list(ds.input_shape), "num_classes": int(ds.num_classes), "blocks": list(ds.blocks)}
    spec = build_spec(config, args.run, args.data, meta)
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
