"""`evotrace figure`: draw the figures of a research question from its analysis tables (never from the
traces: those give only the runs' parameters) and export each to HTML, PDF and PNG. One process draws
all of a question's figures through one headless Chromium, whose start is most of a figure's cost."""

from __future__ import annotations

from pathlib import Path

from ..analysis.command import RQS, load_params, read_tables, report_errors, rq_module

FORMATS = ("html", "pdf", "png")


def figure(rq: str, names, tables_dir, config_json, traces_dir, out_dir, formats=FORMATS) -> list[Path]:
    """Write <out_dir>/<figure>.<format> for the named figures of `rq` (all when `names` is empty)."""
    module = rq_module(rq, "evotrace.figures")
    names = list(names) if names else list(module.FIGURES)
    unknown = [n for n in names if n not in module.FIGURES]
    if unknown:
        raise KeyError(f"{rq} has no figure(s) {', '.join(unknown)}; it has {', '.join(module.FIGURES)}")
    tables = read_tables(tables_dir)
    params = load_params(config_json, traces_dir)
    drawn = [(module.FIGURES[name](tables, params), [Path(out_dir) / f"{name}.{ext}" for ext in formats])
             for name in names]
    from .export import save_many

    save_many(drawn)
    return [path for _, paths in drawn for path in paths]


def _main(args) -> int:
    return report_errors("figure", figure, args.rq, args.name, args.tables_dir, args.config_json, args.traces_dir,
                         args.out_dir, args.formats)


def register(sub) -> None:
    p = sub.add_parser("figure", help="draw the figures of a research question from its tables")
    p.add_argument("--rq", required=True, choices=RQS)
    p.add_argument("--name", nargs="+", help="figures to draw, keys of evotrace.figures.<rq>.FIGURES (default: all)")
    p.add_argument("--tables-dir", required=True, help="results/<study>/tables/rqN")
    p.add_argument("--config-json", required=True, help="the whole study config as JSON")
    p.add_argument("--traces-dir", help="results/<study>/traces (for the runs' parameters)")
    p.add_argument("--out-dir", required=True, help="where <figure>.<format> go: results/<study>/figures/rqN")
    p.add_argument("--formats", nargs="+", default=list(FORMATS), choices=["html", "pdf", "png", "svg"])
    p.set_defaults(func=_main)
