"""CANDLE-ATTN: AgEBO-tabular's dense-skip space, one sub-graph per input block plus a merge sub-graph.

Each sub-graph has 3 dense nodes (choice 0 = identity, else width x activation) and 1+2+3 binary skip
nodes, in the order [d0, s0_0, d1, s1_0, s1_1, d2, s2_0, s2_1, s2_2]. Layer k sums its dense output
with the active skips from the sub-graph input and the previous layer outputs (anchors), projecting a
skip linearly when its width differs; ReLU follows the sum only when a skip is active."""

from __future__ import annotations

import torch
from torch import nn

from .base import SearchSpace

ACTIVATIONS = ("linear", "swish", "relu", "tanh", "sigmoid")
LAYERS = 3
SUBGRAPH = ("d0", "s0_0", "d1", "s1_0", "s1_1", "d2", "s2_0", "s2_1", "s2_2")
_DENSE_AT = (0, 2, 5)  # offset of each dense node inside a sub-graph
_SKIP_AT = ((1,), (3, 4), (6, 7, 8))  # offsets of layer k's skip nodes, anchor j = input, layer 0, layer 1


def _activation(name: str) -> nn.Module:
    return {"linear": nn.Identity, "swish": nn.SiLU, "relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[name]()


class SubGraph(nn.Module):
    def __init__(self, choices: tuple[int, ...], width_in: int, dense: list[tuple[int, str] | None]):
        super().__init__()
        self.layers = nn.ModuleList()
        self.skips: list[list[int]] = []
        anchors = [width_in]
        width = width_in
        for k in range(LAYERS):
            layer = nn.Module()
            spec = dense[choices[_DENSE_AT[k]]]
            if spec is None:
                layer.dense = nn.Identity()
            else:
                units, act = spec
                layer.dense = nn.Sequential(nn.Linear(width, units), _activation(act))
                width = units
            active = [j for j, off in enumerate(_SKIP_AT[k]) if choices[off] == 1]
            layer.proj = nn.ModuleDict(
                {str(j): nn.Linear(anchors[j], width) for j in active if anchors[j] != width}
            )
            self.layers.append(layer)
            self.skips.append(active)
            anchors.append(width)
        self.width_out = width

    def forward(self, x):
        anchors = [x]
        for layer, active in zip(self.layers, self.skips):
            out = layer.dense(anchors[-1])
            if active:
                for j in active:
                    skip = anchors[j]
                    out = out + (layer.proj[str(j)](skip) if str(j) in layer.proj else skip)
                out = torch.relu(out)
            anchors.append(out)
        return anchors[-1]


class AttnNetwork(nn.Module):
    def __init__(self, seq, input_blocks, dense, num_classes):
        super().__init__()
        self.input_blocks = list(input_blocks)
        n = len(SUBGRAPH)
        self.blocks = nn.ModuleList(
            SubGraph(seq[b * n:(b + 1) * n], w, dense) for b, w in enumerate(self.input_blocks)
        )
        merged = sum(block.width_out for block in self.blocks)
        self.merge = SubGraph(seq[-n:], merged, dense)
        self.output = nn.Linear(self.merge.width_out, num_classes)

    def forward(self, x):
        parts = torch.split(x, self.input_blocks, dim=1)
        h = torch.cat([block(part) for block, part in zip(self.blocks, parts)], dim=1)
        return self.output(self.merge(h))


class AttnSpace(SearchSpace):
    name = "attn"
    dataset_kind = "tabular"
    options_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "widths": {
                "type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 3, "maxItems": 3,
                "default": [50, 1975, 25], "description": "[first, last, step] of the dense widths, last included",
            },
            "activations": {
                "type": "array", "items": {"type": "string", "enum": list(ACTIVATIONS)}, "minItems": 1,
                "uniqueItems": True, "default": list(ACTIVATIONS),
            },
        },
    }

    @classmethod
    def check_options(cls, options):
        first, last, _ = options["widths"]
        if first > last:
            raise ValueError(f"widths: first {first} > last {last}")

    def __init__(self, input_blocks=(3106, 3106), widths=(50, 1975, 25), activations=ACTIVATIONS, num_classes=2):
        """`input_blocks`: feature count of each input block, or the number of blocks (width 1 each,
        for describing the space only); `widths`: (first, last, step), last included."""
        if isinstance(input_blocks, int):
            input_blocks = [1] * input_blocks
        self.input_blocks = [int(w) for w in input_blocks]
        first, last, step = (int(v) for v in widths)
        if not self.input_blocks or min(self.input_blocks) < 1:
            raise ValueError(f"attn: input_blocks must be positive widths, got {input_blocks}")
        if step < 1 or first < 1 or last < first:
            raise ValueError(f"attn: widths must be (first>=1, last>=first, step>=1), got {widths}")
        unknown = [a for a in activations if a not in ACTIVATIONS]
        if unknown or not activations:
            raise ValueError(f"attn: unknown activation(s) {unknown}; choose from {list(ACTIVATIONS)}")
        self.widths = (first, last, step)
        self.activations = tuple(activations)
        self.num_classes = int(num_classes)
        self.dense: list[tuple[int, str] | None] = [None] + [
            (units, act) for units in range(first, last + 1, step) for act in self.activations
        ]

    @property
    def subgraphs(self) -> int:
        return len(self.input_blocks) + 1

    @property
    def node_names(self):
        names = []
        for b in range(self.subgraphs):
            tag = "merge" if b == len(self.input_blocks) else f"in{b}"
            names += [f"{tag}.{node}" for node in SUBGRAPH]
        return names

    @property
    def num_choices(self):
        return [len(self.dense) if node.startswith("d") else 2 for node in SUBGRAPH] * self.subgraphs

    def options(self):
        return {
            "input_blocks": self.input_blocks,
            "widths": list(self.widths),
            "activations": list(self.activations),
            "num_classes": self.num_classes,
        }

    def choice_label(self, position: int, choice: int) -> str:
        if SUBGRAPH[position % len(SUBGRAPH)].startswith("s"):
            return "skip" if choice else "no-skip"
        spec = self.dense[choice]
        return "identity" if spec is None else f"{spec[0]}-{spec[1]}"

    def _build(self, seq):
        return AttnNetwork(seq, self.input_blocks, self.dense, self.num_classes)

    def _tensor_shapes(self, seq):
        shapes = {}
        n = len(SUBGRAPH)

        def subgraph(prefix, choices, width):
            anchors = [width]
            for k in range(LAYERS):
                spec = self.dense[choices[_DENSE_AT[k]]]
                if spec is not None:
                    shapes[f"{prefix}.layers.{k}.dense.0.weight"] = ((spec[0], width), 4)
                    shapes[f"{prefix}.layers.{k}.dense.0.bias"] = ((spec[0],), 4)
                    width = spec[0]
                for j, off in enumerate(_SKIP_AT[k]):
                    if choices[off] == 1 and anchors[j] != width:
                        shapes[f"{prefix}.layers.{k}.proj.{j}.weight"] = ((width, anchors[j]), 4)
                        shapes[f"{prefix}.layers.{k}.proj.{j}.bias"] = ((width,), 4)
                anchors.append(width)
            return width

        merged = sum(subgraph(f"blocks.{b}", seq[b * n:(b + 1) * n], w) for b, w in enumerate(self.input_blocks))
        width = subgraph("merge", seq[-n:], merged)
        shapes["output.weight"] = ((self.num_classes, width), 4)
        shapes["output.bias"] = ((self.num_classes,), 4)
        return shapes

    def _tensor_positions(self, seq, names):
        """A tensor created at position q depends on its sub-graph's positions up to q; merge and output
        tensors also depend on every input sub-graph."""
        n = len(SUBGRAPH)
        positions = {}
        for name in names:
            parts = name.split(".")
            if parts[0] == "output":
                positions[name] = frozenset(range(len(self)))
                continue
            block = len(self.input_blocks) if parts[0] == "merge" else int(parts[1])
            k = int(parts[2] if parts[0] == "merge" else parts[3])
            rest = parts[3:] if parts[0] == "merge" else parts[4:]
            offset = _SKIP_AT[k][int(rest[1])] if rest[0] == "proj" else _DENSE_AT[k]
            start = 0 if block == len(self.input_blocks) else block * n
            positions[name] = frozenset(range(start, block * n + offset + 1))
        return positions
