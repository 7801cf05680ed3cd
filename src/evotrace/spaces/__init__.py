"""The registry of search spaces: `make_space(name, **options)` is the one way to get one, and every
caller that needs to know about a space (config checks, run specs, the CLI) asks `space_class(name)`.

A space of this package is one module plus one line in BUILTIN below; a space of another installed
package registers through the `evotrace.spaces` entry point group (docs/architecture.md). A space's module
(torch) is imported on first lookup only: commands that only name spaces (figures, tables, the CLI's
choices) start without torch."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from .base import DATASET_KINDS, InvalidSequence, SearchSpace

SPACES: dict[str, type[SearchSpace]] = {}
ENTRY_POINTS = "evotrace.spaces"
BUILTIN = {"nb201": "evotrace.spaces.nb201:NB201Space", "attn": "evotrace.spaces.attn:AttnSpace"}


class UnknownSpace(ValueError):
    """A space name that no registered space has; the message lists the known ones."""


def register_space(cls: type[SearchSpace]) -> type[SearchSpace]:
    if cls.dataset_kind not in DATASET_KINDS:
        raise ValueError(f"space {cls.name!r}: dataset_kind {cls.dataset_kind!r} is not one of {sorted(DATASET_KINDS)}")
    SPACES[cls.name] = cls
    return cls


def _plugins() -> dict:
    """{name: entry point} of the spaces other installed packages declare (not loaded)."""
    return {entry.name: entry for entry in entry_points(group=ENTRY_POINTS)}


def known_spaces() -> list[str]:
    return sorted(set(SPACES) | set(BUILTIN) | set(_plugins()))


def space_class(name: str) -> type[SearchSpace]:
    if name not in SPACES:
        if name in BUILTIN:
            module, attr = BUILTIN[name].split(":")
            register_space(getattr(importlib.import_module(module), attr))
        elif (entry := _plugins().get(name)) is not None:
            cls = register_space(entry.load())
            if cls.name != name:
                raise UnknownSpace(f"entry point {name!r} of group {ENTRY_POINTS} loads space {cls.name!r}: "
                                   "the entry point must be named as its space")
        else:
            raise UnknownSpace(f"unknown search space {name!r}; known: {known_spaces()}")
    return SPACES[name]


def make_space(name: str, **options) -> SearchSpace:
    return space_class(name)(**options)


def __getattr__(attr: str):
    """`from evotrace.spaces import NB201Space` still works: the class is loaded then."""
    for name, target in BUILTIN.items():
        if target.endswith(f":{attr}"):
            return space_class(name)
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


__all__ = ["AttnSpace", "InvalidSequence", "NB201Space", "SPACES", "SearchSpace", "UnknownSpace", "known_spaces",
           "make_space", "register_space", "space_class"]
