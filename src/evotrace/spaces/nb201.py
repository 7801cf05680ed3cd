"""NAS-Bench-201: one cell of 6 edges x 5 ops, repeated in a 3-stage ResNet-like macro network.

The canonical order is the official one: ops `none, skip_connect, nor_conv_1x1, nor_conv_3x3,
avg_pool_3x3`; edges as in the arch string, ordered by target node (0->1), (0->2), (1->2), (0->3),
(1->3), (2->3)."""

from __future__ import annotations

import re

from torch import nn

from .base import InvalidSequence, SearchSpace

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))  # (source, target) per sequence position
_UPSTREAM = {0: frozenset()}  # node -> positions its value depends on, inside one cell
for _node in (1, 2, 3):
    _UPSTREAM[_node] = frozenset().union(
        *(_UPSTREAM[src] | {pos} for pos, (src, dst) in enumerate(EDGES) if dst == _node)
    )


def edge_positions(pos: int) -> frozenset[int]:
    """Positions that shape the op on edge `pos` of the first cell: its own and those upstream of its source."""
    return _UPSTREAM[EDGES[pos][0]] | {pos}


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1):
        super().__init__()
        self.relu = nn.ReLU()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)


class Zero(nn.Module):
    def forward(self, x):
        return x.mul(0.0)


def _op(name: str, channels: int) -> nn.Module:
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3)
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


class Cell(nn.Module):
    def __init__(self, seq: tuple[int, ...], channels: int):
        super().__init__()
        self.edges = nn.ModuleList(_op(OPS[choice], channels) for choice in seq)

    def forward(self, x):
        nodes = [x]
        for target in (1, 2, 3):
            nodes.append(sum(self.edges[p](nodes[s]) for p, (s, t) in enumerate(EDGES) if t == target))
        return nodes[3]


class ResidualReduction(nn.Module):
    """The NAS-Bench-201 reduction block: a stride-2 basic residual block doubling the channels."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride=2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3)
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(2, stride=2, padding=0), nn.Conv2d(c_in, c_out, 1, bias=False)
        )

    def forward(self, x):
        return self.conv_b(self.conv_a(x)) + self.shortcut(x)


class NB201Network(nn.Module):
    def __init__(self, seq, channels, cells_per_stage, in_channels, num_classes):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)
        )
        layers, c = [], channels
        for stage in range(3):
            if stage > 0:
                layers.append(ResidualReduction(c, 2 * c))
                c *= 2
            layers.extend(Cell(seq, c) for _ in range(cells_per_stage))
        self.cells = nn.Sequential(*layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x):
        x = self.lastact(self.cells(self.stem(x)))
        return self.classifier(self.pool(x).flatten(1))


class NB201Space(SearchSpace):
    name = "nb201"
    dataset_kind = "image"
    options_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "C": {"type": "integer", "minimum": 1, "default": 16, "description": "channels of the first stage"},
            "N": {"type": "integer", "minimum": 1, "default": 5, "description": "cells per stage"},
        },
    }

    def __init__(self, C: int = 16, N: int = 5, input_shape=(3, 32, 32), num_classes: int = 10):
        if C < 1 or N < 1 or num_classes < 2:
            raise ValueError(f"nb201: need C>=1, N>=1, num_classes>=2, got C={C}, N={N}, num_classes={num_classes}")
        self.C, self.N = int(C), int(N)
        self.input_shape = tuple(int(d) for d in input_shape)
        self.num_classes = int(num_classes)

    @property
    def node_names(self):
        return [f"edge{s}->{t}" for s, t in EDGES]

    @property
    def num_choices(self):
        return [len(OPS)] * len(EDGES)

    def options(self):
        return {"C": self.C, "N": self.N, "input_shape": list(self.input_shape), "num_classes": self.num_classes}

    def _build(self, seq):
        return NB201Network(seq, self.C, self.N, self.input_shape[0], self.num_classes)

    def _tensor_shapes(self, seq):
        shapes = {}

        def bn(prefix, c):
            shapes.update({f"{prefix}.weight": ((c,), 4), f"{prefix}.bias": ((c,), 4),
                           f"{prefix}.running_mean": ((c,), 4), f"{prefix}.running_var": ((c,), 4),
                           f"{prefix}.num_batches_tracked": ((), 8)})

        def relu_conv_bn(prefix, c_in, c_out, kernel):
            shapes[f"{prefix}.conv.weight"] = ((c_out, c_in, kernel, kernel), 4)
            bn(f"{prefix}.bn", c_out)

        c = self.C
        shapes["stem.0.weight"] = ((c, self.input_shape[0], 3, 3), 4)
        bn("stem.1", c)
        index = 0
        for stage in range(3):
            if stage > 0:
                relu_conv_bn(f"cells.{index}.conv_a", c, 2 * c, 3)
                relu_conv_bn(f"cells.{index}.conv_b", 2 * c, 2 * c, 3)
                shapes[f"cells.{index}.shortcut.1.weight"] = ((2 * c, c, 1, 1), 4)
                c *= 2
                index += 1
            for _ in range(self.N):
                for pos, choice in enumerate(seq):
                    if OPS[choice] in ("nor_conv_1x1", "nor_conv_3x3"):
                        relu_conv_bn(f"cells.{index}.edges.{pos}", c, c, 1 if OPS[choice] == "nor_conv_1x1" else 3)
                index += 1
        bn("lastact.0", c)
        shapes["classifier.weight"] = ((self.num_classes, c), 4)
        shapes["classifier.bias"] = ((self.num_classes,), 4)
        return shapes

    def _tensor_positions(self, seq, names):
        everything = frozenset(range(len(EDGES)))
        positions = {}
        for name in names:
            if name.startswith("stem."):
                positions[name] = frozenset()
            elif name.startswith("cells.0.edges."):
                positions[name] = edge_positions(int(name.split(".")[3]))
            else:
                positions[name] = everything
        return positions

    def to_arch_str(self, seq) -> str:
        seq = self.validate(seq)
        nodes = []
        for target in (1, 2, 3):
            ops = [f"{OPS[seq[p]]}~{s}" for p, (s, t) in enumerate(EDGES) if t == target]
            nodes.append("|" + "|".join(ops) + "|")
        return "+".join(nodes)

    def from_arch_str(self, arch: str) -> tuple[int, ...]:
        found = re.findall(r"([a-z_0-9]+)~(\d+)", arch)
        edges = []
        for target, node in enumerate(arch.split("+"), start=1):
            for op, source in re.findall(r"([a-z_0-9]+)~(\d+)", node):
                edges.append(((int(source), target), op))
        if len(found) != len(EDGES) or [e for e, _ in edges] != list(EDGES):
            raise InvalidSequence(f"nb201: {arch!r} is not a 4-node NAS-Bench-201 arch string")
        unknown = [op for _, op in edges if op not in OPS]
        if unknown:
            raise InvalidSequence(f"nb201: unknown op(s) {unknown} in {arch!r}; ops are {list(OPS)}")
        return tuple(OPS.index(op) for _, op in edges)
