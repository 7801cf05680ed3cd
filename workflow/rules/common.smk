import importlib
import json

from snakemake.utils import validate

from evotrace.config import check


validate(config, schema="../schemas/config.schema.yaml")
check(config)

STUDY = config["study"]
RESULTS = f"results/{STUDY}"
LOGS = f"logs/{STUDY}"
BENCH = f"benchmarks/{STUDY}"
RUNS = list(config["runs"])
RQS = ["rq1", "rq2", "rq3", "rq4"]
FIGURE_FORMATS = ["html", "pdf", "png"]


def tables_of(rq):
    """Table names an analysis module computes (evotrace.analysis.rqN.TABLES)."""
    return list(importlib.import_module(f"evotrace.analysis.{rq}").TABLES)


def figures_of(rq):
    """Figure names a figure module draws (evotrace.figures.rqN.FIGURES)."""
    return list(importlib.import_module(f"evotrace.figures.{rq}").FIGURES)


def caption_of(rq, figure):
    return "../report/" + importlib.import_module(f"evotrace.figures.{rq}").CAPTIONS[figure]


def dataset_of(wildcards):
    return f"resources/data/{config['runs'][wildcards.run]['dataset']}.npz"


def search_workers(wildcards):
    return config["search"]["workers"]


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
