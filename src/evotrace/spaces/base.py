"""The contract every search space fulfils: choices per variable node, sampling, validation,
model construction with stable tensor names, and the positions each tensor depends on."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    import torch


class InvalidSequence(ValueError):
    """An architecture sequence that does not belong to the space."""


# what a prepared dataset of each kind fixes in a space's constructor (the rest comes from the config)
DATASET_KINDS = {
    "image": lambda ds: {"input_shape": [int(d) for d in ds.input_shape], "num_classes": int(ds.num_classes)},
    "tabular": lambda ds: {"input_blocks": [int(b) for b in ds.blocks], "num_classes": int(ds.num_classes)},
}


class SearchSpace(ABC):
    """A space declares, beside its structure, what the study config may set and what data it needs:
    `name` (the config's `space`), `dataset_kind` (a key of DATASET_KINDS; only sources of that kind
    feed it) and `options_schema` (JSON schema of the config's `space_options`, with defaults)."""

    name: str = ""
    dataset_kind: str = ""
    options_schema: dict = {"type": "object", "additionalProperties": False, "properties": {}}

    @classmethod
    def check_options(cls, options: dict) -> None:
        """Raise ValueError on config options its schema accepts but the space cannot use."""

    @classmethod
    def dataset_options(cls, dataset) -> dict:
        """The constructor options a prepared dataset (`evotrace.data.Dataset`) fixes."""
        return DATASET_KINDS[cls.dataset_kind](dataset)

    @property
    @abstractmethod
    def node_names(self) -> list[str]:
        """One name per variable node, in sequence order."""

    @property
    @abstractmethod
    def num_choices(self) -> list[int]:
        """Number of choices of each variable node, in sequence order."""

    @abstractmethod
    def options(self) -> dict:
        """The constructor arguments, so that a space can be rebuilt from a trace's metadata."""

    @abstractmethod
    def _build(self, seq: tuple[int, ...]) -> torch.nn.Module: ...

    @abstractmethod
    def _tensor_positions(self, seq: tuple[int, ...], names) -> dict[str, frozenset[int]]: ...

    def __len__(self) -> int:
        return len(self.num_choices)

    @property
    def size(self) -> int:
        """Exact number of members: the product of the choice counts (a Python int, no overflow)."""
        return math.prod(self.num_choices)

    def sample(self, rng: np.random.Generator) -> tuple[int, ...]:
        return tuple(int(rng.integers(0, n)) for n in self.num_choices)

    def validate(self, seq: Sequence[int]) -> tuple[int, ...]:
        """Return `seq` as a tuple of ints, or raise InvalidSequence naming what is wrong."""
        try:
            seq = tuple(seq)
        except TypeError as err:
            raise InvalidSequence(f"{self.name}: a sequence must be a list of ints, got {seq!r}") from err
        if len(seq) != len(self):
            raise InvalidSequence(
                f"{self.name}: sequence has {len(seq)} choices, the space has {len(self)} variable nodes"
            )
        out = []
        for pos, (value, n) in enumerate(zip(seq, self.num_choices)):
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
                raise InvalidSequence(f"{self.name}: position {pos} ({self.node_names[pos]}) is {value!r}, not an int")
            if not 0 <= value < n:
                raise InvalidSequence(
                    f"{self.name}: position {pos} ({self.node_names[pos]}) has choice {value}, valid choices are 0..{n - 1}"
                )
            out.append(int(value))
        return tuple(out)

    def build(self, seq: Sequence[int]) -> torch.nn.Module:
        """The model of `seq`; tensors at the same place of the macro structure keep the same name."""
        return self._build(self.validate(seq))

    def tensor_positions(self, seq: Sequence[int], model: torch.nn.Module | None = None) -> dict[str, frozenset[int]]:
        """For every state_dict entry of build(seq) (pass `model` if already built), the sequence
        positions whose choices shape its value: a tensor can be transferred from a donor sharing a
        prefix of length L exactly when all its positions are < L."""
        seq = self.validate(seq)
        return self._tensor_positions(seq, list((model or self._build(seq)).state_dict()))

    def _tensor_shapes(self, seq: tuple[int, ...]) -> dict[str, tuple[tuple[int, ...], int]]:
        """Every state_dict entry of build(seq), in order, as name -> (shape, bytes per element),
        computed without building the model (the simulator needs it for every candidate)."""
        raise NotImplementedError(f"space {self.name!r} cannot describe its tensors without building them")

    def tensor_layout(self, seq: Sequence[int]) -> list[tuple[str, int, int]]:
        """(name, largest position the tensor depends on or -1, nbytes) for every state_dict entry of
        build(seq), without building it: what a simulated worker reads, trains and stores."""
        seq = self.validate(seq)
        shapes = self._tensor_shapes(seq)
        positions = self._tensor_positions(seq, list(shapes))
        return [(name, max(positions[name], default=-1), math.prod(shape) * itemsize)
                for name, (shape, itemsize) in shapes.items()]

    def describe(self) -> dict:
        return {
            "space": self.name,
            "options": self.options(),
            "variables": len(self),
            "nodes": [{"name": n, "choices": c} for n, c in zip(self.node_names, self.num_choices)],
            "size": self.size,
            "size_scientific": f"{float(self.size):.4g}",
        }
