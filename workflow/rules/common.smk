import importlib
import json
import os
import re
import shlex
import sys

from evotrace.analysis import RQS
from evotrace.config import validate
from evotrace.data import SOURCES

validate(config)

STUDY = config["study"]
RESULTS = f"results/{STUDY}"
LOGS = f"logs/{STUDY}"
BENCH = f"benchmarks/{STUDY}"
RUNS = list(config["runs"])


wildcard_constraints:
    run="|".join(re.escape(run) for run in RUNS),


FIGURE_FORMATS = ["html", "pdf", "png"]
DOWNLOADS = {name: s.download for name, s in SOURCES.items() if s.download}
ENV = "../envs/evotrace.yaml"

# Rules find the project's programs (`evotrace`, and a venv's PyPI `mpiexec`) beside the interpreter
# Snakemake runs under, never through the caller's PATH alone: `make run` starts .venv/bin/snakemake from
# a shell where no venv is active. Kept out of the rules' params so that provenance does not change with
# the checkout's location. A per-rule conda environment (--sdm conda) brings its own programs.
if "CONDA" not in {m.name for m in workflow.deployment_settings.deployment_method}:
    shell.prefix(
        "set -euo pipefail; export PATH="
        + shlex.quote(os.path.dirname(sys.executable))
        + '"${{PATH:+:$PATH}}"; '
    )


def tables_of(rq):
    """Table names an analysis module computes (evotrace.analysis.rqN.TABLES)."""
    return list(importlib.import_module(f"evotrace.analysis.{rq}").TABLES)


def figures_of(rq):
    """Figure names a figure module draws (evotrace.figures.rqN.FIGURES)."""
    return list(importlib.import_module(f"evotrace.figures.{rq}").FIGURES)


def caption_of(rq, figure):
    return (
        "../report/"
        + importlib.import_module(f"evotrace.figures.{rq}").CAPTIONS[figure]
    )


def findings_of(rq):
    """A params function: {figure: its one-sentence finding}, filled from the tables for the figures
    of evotrace.figures.rqN that have one (FINDINGS), which their report captions state.
    """

    def findings(wildcards, input):
        figures = importlib.import_module(f"evotrace.figures.{rq}")
        return {
            figure: figures.finding(
                figure, os.path.dirname(input.tables[0]), input.config
            )
            for figure in getattr(figures, "FINDINGS", {})
        }

    return findings


# figures whose interactive HTML goes into the report; the others appear there as PNG (each HTML file
# embeds plotly.js, which would make the report hundreds of MB)
INTERACTIVE = {"prefix_animation"}


def figure_file(rq, figure, ext):
    path = f"{RESULTS}/figures/{rq}/{figure}.{ext}"
    if ext == "png" or (ext == "html" and figure in INTERACTIVE):
        return report(path, caption=caption_of(rq, figure), category=rq.upper())
    return path


def run_settings(wildcards):
    """Every part of the config a run's spec is built from (evotrace.runspec.build_spec)."""
    run = config["runs"][wildcards.run]
    return {
        "study": STUDY,
        "run": run,
        "dataset": config["datasets"][run["dataset"]],
        **{part: config[part] for part in ("search", "training", "transfer")},
    }


def dataset_of(wildcards):
    return f"resources/data/{config['runs'][wildcards.run]['dataset']}.npz"


def search_workers(wildcards):
    return config["runs"][wildcards.run].get("workers", config["search"]["workers"])


def simulated(wildcards):
    """A simulated run: virtual workers in one process, no MPI ranks."""
    kind = config["runs"][wildcards.run].get("evaluation", {}).get("kind", "train")
    return kind == "simulated"


def search_launcher(wildcards, resources):
    """The MPI launcher a profile names (resources.mpi: mpiexec, srun, Polaris' mpiexec with its
    binding), or plain mpiexec when Snakemake runs without a profile."""
    if simulated(wildcards):
        return ""
    return f"{resources.get('mpi', 'mpiexec')} -n {resources.tasks}"


def final_output():
    out = [f"{RESULTS}/tables/summary.csv"]
    for rq in RQS:
        out += expand(f"{RESULTS}/tables/{rq}/{{table}}.csv", table=tables_of(rq))
        out += expand(
            f"{RESULTS}/figures/{rq}/{{figure}}.{{ext}}",
            figure=figures_of(rq),
            ext=FIGURE_FORMATS,
        )
    return out


def checksum_of(wildcards):
    """The published md5, or the sha256 a user pinned in the dataset's config entry."""
    pinned = [
        d["sha256"]
        for d in config["datasets"].values()
        if d["source"] == wildcards.source and "sha256" in d
    ]
    if pinned:
        return f"--sha256 {pinned[0]}"
    md5 = DOWNLOADS[wildcards.source]["md5"]
    return f"--md5 {md5}" if md5 else ""


def download_of(wildcards):
    source = config["datasets"][wildcards.dataset]["source"]
    if source in DOWNLOADS:
        return f"resources/downloads/{source}/{DOWNLOADS[source]['file']}"
    return []


def prepare_options(wildcards):
    ds = config["datasets"][wildcards.dataset]
    flags = [
        f"--source {ds['source']}",
        f"--validation-fraction {ds['validation_fraction']}",
        f"--seed {ds['seed']}",
    ]
    for key in ("input_blocks", "max_train", "max_val"):
        if key in ds:
            flags.append(f"--{key.replace('_', '-')} {ds[key]}")
    return " ".join(flags)
