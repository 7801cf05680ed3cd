"""Greedy longest-common-prefix transfer: donor choice, weight transfer with freezing, and skip-store.

The master keeps a `PrefixIndex` of the stored models and names, for each child, the donor with the
longest common prefix of the architecture sequence (ties to higher quality, then to the most recent).
The worker calls `apply()`: every tensor whose positions all lie inside the common prefix is copied bit
for bit from the donor and frozen; the rest trains. `should_store()` is the study's bound (Sec. V-C) on
the chance that a model ever becomes a donor, used to skip storing models that never will."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .repository import CorruptTensor, ModelRepository  # noqa: F401  (CorruptTensor is part of this API)
from .trace import READ_COLUMNS


def quality_key(quality) -> float:
    """Failed or missing qualities rank below every real one."""
    if quality is None:
        return -math.inf
    quality = float(quality)
    return -math.inf if math.isnan(quality) else quality


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


# --------------------------------------------------------------------------- donor index
class _Node:
    __slots__ = ("label", "children", "here", "best", "parent")

    def __init__(self, label: tuple, parent: "_Node | None"):
        self.label = label
        self.parent = parent
        self.children: dict[int, _Node] = {}
        self.here: dict[int, tuple] = {}  # models whose sequence ends at this node
        self.best: tuple | None = None  # max (quality, recency, id) over the subtree

    def recompute(self) -> None:
        best = max(self.here.values(), default=None)
        for child in self.children.values():
            if best is None or child.best > best:
                best = child.best
        self.best = best


class PrefixIndex:
    """Radix trie over the sequences of stored models. Each node keeps the best (quality, insertion
    counter, id) of its subtree, so `best()` walks at most len(seq) symbols whatever the number of
    stored models; `add` updates the path, `remove` recomputes it."""

    def __init__(self):
        self._root = _Node((), None)
        self._where: dict[int, _Node] = {}
        self._seqs: dict[int, tuple[int, ...]] = {}
        self._counter = 0

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, model_id) -> bool:
        return int(model_id) in self._where

    def seq(self, model_id: int) -> tuple[int, ...]:
        return self._seqs[int(model_id)]

    def add(self, model_id: int, seq: Sequence[int], quality) -> None:
        """Insert a stored model (re-adding an id replaces it and makes it the most recent)."""
        model_id = int(model_id)
        if model_id in self._where:
            self.remove(model_id)
        seq = tuple(int(v) for v in seq)
        self._counter += 1
        key = (quality_key(quality), self._counter, model_id)
        node, i, n = self._root, 0, len(seq)
        while True:
            if node.best is None or key > node.best:
                node.best = key
            if i == n:
                node.here[model_id] = key
                break
            child = node.children.get(seq[i])
            if child is None:
                leaf = _Node(seq[i:], node)
                leaf.here[model_id] = key
                leaf.best = key
                node.children[seq[i]] = leaf
                node = leaf
                break
            label = child.label
            m = len(label)
            if seq[i:i + m] != label:
                m = 1
                while m < len(label) and i + m < n and label[m] == seq[i + m]:
                    m += 1
                mid = _Node(label[:m], node)
                mid.best = child.best
                mid.children[label[m]] = child
                child.label = label[m:]
                child.parent = mid
                node.children[seq[i]] = mid
                child = mid
            node, i = child, i + m
        self._where[model_id] = node
        self._seqs[model_id] = seq

    def remove(self, model_id: int) -> bool:
        """Forget a model (evicted, or not stored after all); False if it was not indexed."""
        model_id = int(model_id)
        node = self._where.pop(model_id, None)
        if node is None:
            return False
        del self._seqs[model_id]
        del node.here[model_id]
        root = self._root
        while node is not root and not node.here and not node.children:
            parent = node.parent
            del parent.children[node.label[0]]
            node = parent
        if node is not root and not node.here and len(node.children) == 1:
            (child,) = node.children.values()
            child.label = node.label + child.label
            child.parent = node.parent
            node.parent.children[child.label[0]] = child
            node = node.parent
        while node is not None:
            node.recompute()
            node = node.parent
        return True

    def best(self, seq: Sequence[int]) -> tuple[int, int] | None:
        """(donor_id, lcp): the stored model sharing the longest prefix with `seq`, ties to higher
        quality then to the most recently added; None when nothing is stored. lcp may be 0."""
        node = self._root
        if node.best is None:
            return None
        seq = tuple(seq)
        i, n = 0, len(seq)
        while i < n:
            child = node.children.get(seq[i])
            if child is None:
                break
            label = child.label
            m = len(label)
            if seq[i:i + m] == label:
                node, i = child, i + m
                continue
            m = 1
            while m < len(label) and i + m < n and label[m] == seq[i + m]:
                m += 1
            return child.best[2], i + m
        return node.best[2], i


# --------------------------------------------------------------------------- weight transfer
@dataclass
class TensorRead:
    """One transferred tensor, as a row of the tensor_reads trace: its fields are evotrace.trace.READ_COLUMNS."""

    tensor_id: str
    owner_id: int
    position: int  # largest sequence position the tensor depends on; -1 when none
    nbytes: int
    cache_hit: bool


@dataclass
class TransferResult:
    donor_id: int | None
    lcp: int
    transferred: list[str] = field(default_factory=list)
    frozen: list[str] = field(default_factory=list)
    inherited: dict[str, dict] = field(default_factory=dict)  # pass to ModelRepository.put
    bytes_read: int = 0  # from the repository; cache hits excluded
    cache_hits: int = 0
    seconds: float = 0.0
    reads: list[TensorRead] = field(default_factory=list)
    bn_hooks: list = field(default_factory=list)

    @property
    def tensor_ids(self) -> list[str]:
        return [r.tensor_id for r in self.reads]

    def summary(self) -> dict:
        """The read side of a worker's report (evotrace.trace.REPORTED); donor_id and prefix_len are the
        caller's to set, only when a tensor was actually copied."""
        return {"n_transferred_tensors": len(self.transferred), "bytes_read": self.bytes_read,
                "transfer_seconds": self.seconds, "cache_hits": self.cache_hits}

    def read_columns(self) -> dict[str, list]:
        """The reads as a worker reports them (evotrace.trace.no_reads): TensorRead's fields as columns."""
        return {c: [getattr(r, c) for r in self.reads] for c in READ_COLUMNS}


def transferable(
    positions: Mapping[str, frozenset],
    state_dict: Mapping[str, torch.Tensor],
    donor_manifest: Mapping[str, dict],
    lcp: int,
) -> list[str]:
    """Names whose positions all lie inside the common prefix and that the donor holds with the same
    dtype and shape (a prefix choice fixes the shape, so a mismatch means another space or options)."""
    names = []
    for name, tensor in state_dict.items():
        entry = donor_manifest.get(name)
        if entry is None or any(p >= lcp for p in positions[name]):
            continue
        if list(entry["shape"]) == list(tensor.shape) and entry["dtype"] == str(tensor.dtype).removeprefix("torch."):
            names.append(name)
    return names


def _freeze_hook(module, args):
    module.training = False


def frozen_bn_modules(model: nn.Module, frozen_names) -> list[nn.Module]:
    """BatchNorm modules whose state_dict entries are all in `frozen_names`."""
    frozen = set(frozen_names)
    modules = []
    for prefix, module in model.named_modules():
        if isinstance(module, _BatchNorm):
            names = [f"{prefix}.{k}" if prefix else k for k in module.state_dict()]
            if names and all(n in frozen for n in names):
                modules.append(module)
    return modules


def freeze_bn(model: nn.Module, frozen_names) -> list:
    """Keep every BatchNorm whose tensors are all frozen in eval mode, whatever model.train() says, so
    its running statistics stay the donor's. Works by a forward pre-hook: the trainer needs no change.
    Returns the hook handles (call .remove() on them to undo)."""
    handles = []
    for module in frozen_bn_modules(model, frozen_names):
        module.training = False
        handles.append(module.register_forward_pre_hook(_freeze_hook))
    return handles


def _buffer_owners(model: nn.Module) -> dict[str, nn.Module]:
    owners = {}
    for prefix, module in model.named_modules():
        for name, _ in module.named_buffers(recurse=False):
            owners[f"{prefix}.{name}" if prefix else name] = module
    return owners


def apply(
    model: nn.Module,
    space,
    seq: Sequence[int],
    donor_manifest: Mapping[str, dict],
    lcp: int,
    repository: ModelRepository,
    cache=None,
    fine_tune: bool = False,
    positions: Mapping[str, frozenset] | None = None,
    donor_id: int | None = None,
) -> TransferResult:
    """Copy the donor's prefix tensors into `model` (built from `seq`) and, unless `fine_tune`, freeze
    them (parameters: requires_grad False; BatchNorm fully inside the prefix: kept in eval mode).

    All tensors are read and verified before the model is touched: on CorruptTensor the model is
    unchanged and the caller trains it from scratch. With `fine_tune` the copied tensors train too, so
    the child owns new versions and `inherited` is empty. Otherwise `inherited` maps each tensor that
    stays bit-identical to the donor's entry: pass it to ModelRepository.put so it is not stored again.
    """
    t0 = time.perf_counter()
    positions = space.tensor_positions(seq) if positions is None else positions
    state = model.state_dict()
    names = transferable(positions, state, donor_manifest, lcp)
    entries = {n: donor_manifest[n] for n in names}

    tensors: dict[str, torch.Tensor] = {}
    if cache is not None:
        for name, entry in entries.items():
            hit = cache.get(entry)
            if hit is not None:
                tensors[name] = hit
    hits = set(tensors)
    missing = {n: e for n, e in entries.items() if n not in hits}
    tensors.update(repository.read_tensors(missing))
    if cache is not None:
        for name, entry in missing.items():
            cache.put(entry, tensors[name])

    with torch.no_grad():
        for name in names:
            state[name].copy_(tensors[name])

    result = TransferResult(donor_id=donor_id, lcp=int(lcp), transferred=names)
    result.cache_hits = len(hits)
    result.bytes_read = sum(e["nbytes"] for e in missing.values())
    result.reads = [
        TensorRead(
            tensor_id=e["tensor_id"],
            owner_id=int(e["owner"]),
            position=max(positions[n], default=-1),
            nbytes=int(e["nbytes"]),
            cache_hit=n in hits,
        )
        for n, e in entries.items()
    ]
    if not fine_tune:
        params = dict(model.named_parameters())
        for name in names:
            if name in params:
                params[name].requires_grad_(False)
        frozen_bn = {id(m) for m in frozen_bn_modules(model, names)}
        result.bn_hooks = freeze_bn(model, names)
        owners = _buffer_owners(model)
        result.frozen = [n for n in names if n in params]
        for name in names:
            owner = owners.get(name)
            if name in params or owner is None or not isinstance(owner, _BatchNorm) or id(owner) in frozen_bn:
                result.inherited[name] = dict(entries[name])
    result.seconds = time.perf_counter() - t0
    return result


# --------------------------------------------------------------------------- skip-store
def donor_probability_bound(P: int, lam: int, s: int) -> float:
    """p(X = 0 | X ~ H(P, P - lam, s)): the chance that a tournament of s members drawn from a
    population of P holds none of the P - lam members better than a model of rank `lam` from the bottom
    (1 = worst). An upper bound on it becoming a parent at one draw; 0 for the s - 1 worst. It does not
    bound becoming a donor: a donor is any stored model with the longest common prefix, so a model that
    can never be a parent may still give its prefix (analysis.rq4.skip_store_cost measures how often).
    s > P draws the whole population (s is clamped to P)."""
    P, lam, s = int(P), int(lam), int(s)
    if P < 1 or not 1 <= lam <= P or s < 1:
        raise ValueError(f"need P >= 1, 1 <= lam <= P, s >= 1; got P={P}, lam={lam}, s={s}")
    s = min(s, P)
    return math.comb(lam, s) / math.comb(P, s)


def should_store(P: int, lam: int, s: int, threshold: float = 0.0) -> bool:
    """Store a model only if its parent bound exceeds `threshold` (0: skip exactly those that can never
    be parents; they can still have been donors)."""
    return donor_probability_bound(P, lam, s) > threshold


def rank_from_bottom(quality, population_qualities: Sequence) -> int:
    """λ of a model just inserted: 1 + the number of population members strictly worse (the model
    itself among `population_qualities` or not)."""
    q = quality_key(quality)
    return 1 + sum(1 for other in population_qualities if quality_key(other) < q)
