"""The registry of search spaces: `make_space(name, **options)` is the one way to get one, and every
caller that needs to know about a space (config checks, run specs, the CLI) asks `space_class(name)`.

A space of this package is one module plus one `register_space` line below; a space of another
installed package registers through the `evotrace.spaces` entry point group (docs/architecture.md)."""

from __future__ import annotations

from importlib.metadata import entry_points

from .attn import AttnSpace
from .base import DATASET_KINDS, InvalidSequence, SearchSpace
from .nb201 import NB201Space

SPACES: dict[str, type[SearchSpace]] = {}
ENTRY_POINTS = "evotrace.spaces"


class UnknownSpace(ValueError):
    """A space name that no registered space has; the message lists the known ones."""


def register_space(cls: type[SearchSpace]) -> type[SearchSpace]:
    if cls.dataset_kind not in DATASET_KINDS:
        raise ValueError(f"space {cls.name!r}: dataset_kind {cls.dataset_kind!r} is not one of {sorted(DATASET_KINDS)}")
    SPACES[cls.name] = cls
    return cls


register_space(NB201Space)
register_space(AttnSpace)

_plugins_loaded = False


def _load_plugins() -> None:
    """Spaces of other installed packages, loaded once on the first lookup that needs them."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for entry in entry_points(group=ENTRY_POINTS):
        register_space(entry.load())


def known_spaces() -> list[str]:
    _load_plugins()
    return sorted(SPACES)


def space_class(name: str) -> type[SearchSpace]:
    if name not in SPACES:
        _load_plugins()
    try:
        return SPACES[name]
    except KeyError:
        raise UnknownSpace(f"unknown search space {name!r}; known: {known_spaces()}") from None


def make_space(name: str, **options) -> SearchSpace:
    return space_class(name)(**options)


__all__ = ["AttnSpace", "InvalidSequence", "NB201Space", "SPACES", "SearchSpace", "UnknownSpace", "known_spaces",
           "make_space", "register_space", "space_class"]
