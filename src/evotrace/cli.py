"""The `evotrace` command: one subcommand group per pipeline stage; the Snakemake rules call these."""

from __future__ import annotations

import argparse
import importlib
import json
import sys

# modules that contribute subcommands through `register(subparsers)`
COMMAND_MODULES = [
    "evotrace.cli",
    "evotrace.data",
    "evotrace.runspec",
    "evotrace.search.command",
    "evotrace.search.simulated",
    "evotrace.consolidate",
    "evotrace.analysis.command",
    "evotrace.figures.command",
    "evotrace.pbs",
]


def _space_describe(args) -> int:
    from .spaces import make_space

    options = json.loads(args.options) if args.options else {}
    if args.input_blocks is not None:
        options["input_blocks"] = args.input_blocks
    print(json.dumps(make_space(args.space, **options).describe(), indent=2))
    return 0


def register(sub) -> None:
    from .spaces import known_spaces

    space = sub.add_parser("space", help="inspect a search space").add_subparsers(dest="space_cmd", required=True)
    describe = space.add_parser("describe", help="print a search space as JSON, with its exact size")
    describe.add_argument("--space", required=True, choices=known_spaces())
    describe.add_argument("--options", help='constructor options as JSON, e.g. \'{"C": 16, "N": 5}\'')
    describe.add_argument("--input-blocks", type=int, help="tabular spaces: number of input blocks (attn: 5 gives the study's 54 variables)")
    describe.set_defaults(func=_space_describe)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="evotrace", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        (sys.modules[__name__] if name == __name__ else importlib.import_module(name)).register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
