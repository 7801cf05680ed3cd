"""Search spaces by name; `make_space(name, **options)` is the one way to get one."""

from .attn import AttnSpace
from .base import InvalidSequence, SearchSpace
from .nb201 import NB201Space

SPACES = {"nb201": NB201Space, "attn": AttnSpace}


def make_space(name: str, **options) -> SearchSpace:
    try:
        cls = SPACES[name]
    except KeyError:
        raise ValueError(f"unknown search space {name!r}; known: {sorted(SPACES)}") from None
    return cls(**options)


__all__ = ["AttnSpace", "InvalidSequence", "NB201Space", "SPACES", "SearchSpace", "make_space"]
