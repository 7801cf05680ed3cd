"""`evotrace figure`: draw one figure of a research question from its analysis tables (never from the
traces: those give only the runs' parameters) and export it to HTML, PDF and PNG."""

from __future__ import annotations

from ..analysis.command import RQS, load_params, read_tables, report_errors, rq_module


def figure(rq: str, name: str, tables_dir, config_json, traces_dir, out) -> None:
    module = rq_module(rq, "evotrace.figures")
    if name not in module.FIGURES:
        raise KeyError(f"{rq} has no figure {name}; it has {', '.join(module.FIGURES)}")
    tables = read_tables(tables_dir)
    params = load_params(config_json, traces_dir)
    fig = module.FIGURES[name](tables, params)
    from .export import save

    save(fig, out)


def _main(args) -> int:
    return report_errors("figure", figure, args.rq, args.name, args.tables_dir, args.config_json, args.traces_dir, args.out)


def register(sub) -> None:
    p = sub.add_parser("figure", help="draw one figure of a research question from its tables")
    p.add_argument("--rq", required=True, choices=RQS)
    p.add_argument("--name", required=True, help="a key of evotrace.figures.<rq>.FIGURES")
    p.add_argument("--tables-dir", required=True, help="results/<study>/tables/<rq>")
    p.add_argument("--config-json", required=True, help="the whole study config as JSON")
    p.add_argument("--traces-dir", help="results/<study>/traces (for the runs' parameters)")
    p.add_argument("--out", nargs="+", required=True, help="output files: .html, .pdf, .png")
    p.set_defaults(func=_main)
