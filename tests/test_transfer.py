"""Donor index against brute force; weight transfer, freezing and fine-tuning on both spaces; skip-store
bound against scipy."""

from __future__ import annotations

import random

import pytest
import torch
from scipy.stats import hypergeom

from evotrace import transfer
from evotrace.cache import TensorCache
from evotrace.repository import CorruptTensor, ModelRepository
from evotrace.spaces.attn import AttnSpace
from evotrace.spaces.nb201 import NB201Space
from evotrace.trace import READ_COLUMNS
from evotrace.transfer import PrefixIndex, common_prefix_len


# --------------------------------------------------------------------------- donor index
def _brute(stored: dict, seq):
    if not stored:
        return None
    best = max(stored.items(), key=lambda kv: (common_prefix_len(kv[1][0], seq), kv[1][1], kv[1][2]))
    return best[0], common_prefix_len(best[1][0], seq)


@pytest.mark.parametrize("length,alphabet", [(6, 2), (6, 5), (9, 3), (4, 1)])
def test_prefix_index_matches_brute_force(length, alphabet):
    rng = random.Random(length * 31 + alphabet)
    index, stored, counter = PrefixIndex(), {}, 0
    for step in range(1500):
        action = rng.random()
        if action < 0.45 or not stored:
            model_id = rng.randrange(400)
            seq = tuple(rng.randrange(alphabet) for _ in range(rng.choice([length, length, length - 1])))
            quality = rng.choice([0.1, 0.5, 0.5, 0.9, None])
            counter += 1
            index.add(model_id, seq, quality)
            stored[model_id] = (seq, transfer.quality_key(quality), counter)
        elif action < 0.7:
            model_id = rng.choice(list(stored)) if rng.random() < 0.9 else 10_000
            assert index.remove(model_id) == (model_id in stored)
            stored.pop(model_id, None)
        query = tuple(rng.randrange(alphabet) for _ in range(length))
        if stored and rng.random() < 0.3:
            base = rng.choice(list(stored.values()))[0]
            query = base[: rng.randrange(len(base) + 1)] + query[len(base):]
        assert index.best(query) == _brute(stored, query), (step, query)
        assert len(index) == len(stored)
    for model_id in list(stored):
        index.remove(model_id)
    assert index.best((0,) * length) is None and len(index) == 0


def test_prefix_index_ties_and_lcp_zero():
    index = PrefixIndex()
    assert index.best((1, 2)) is None
    index.add(1, (0, 0, 0), 0.5)
    index.add(2, (0, 0, 1), 0.5)
    assert index.best((0, 0, 2)) == (2, 2)  # tie in quality: the most recent
    index.add(3, (0, 1, 1), 0.9)
    assert index.best((0, 0, 2)) == (2, 2)  # a longer prefix beats a better quality
    assert index.best((0, 2, 2)) == (3, 1)
    assert index.best((5, 5, 5)) == (3, 0)  # no shared prefix: the best stored model
    assert index.best((0, 0, 0)) == (1, 3)
    index.add(1, (0, 0, 0), 0.1)  # re-adding replaces
    assert index.best((0, 0, 0)) == (1, 3) and len(index) == 3
    index.remove(3)
    assert index.best((5, 5, 5)) == (2, 0)


# --------------------------------------------------------------------------- weight transfer
SPACES = {
    "nb201": (NB201Space(C=4, N=1, input_shape=(1, 8, 8)), (3, 2, 3, 3, 2, 3), (3, 2, 3, 1, 3, 2), (8, 1, 8, 8)),
    "attn": (
        AttnSpace(input_blocks=[5, 5], widths=(8, 24, 8)),
        (4, 1, 7, 1, 0, 12, 1, 0, 1) + (2, 0, 9, 1, 1, 3, 0, 1, 1) + (6, 1, 3, 0, 1, 15, 1, 1, 0),
        (4, 1, 7, 1, 0, 12, 1, 0, 1) + (2, 0, 9, 0, 1, 3, 0, 1, 1) + (6, 1, 3, 0, 1, 15, 1, 1, 0),
        (8, 10),
    ),
}


def _donor(space, seq, repo, model_id=0):
    torch.manual_seed(model_id)
    model = space.build(seq)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                tensor.add_(torch.randn_like(tensor) * 0.1)
            else:
                tensor.fill_(17)
    repo.put(model_id, seq, 0.5, model.state_dict())
    return model


def _train(model, input_shape, steps=4):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.5, momentum=0.9, weight_decay=5e-4)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        model.train()  # the trainer calls this each epoch; frozen BatchNorm must stay in eval anyway
        x = torch.randn(input_shape, generator=g)
        y = torch.randint(0, 2, (input_shape[0],), generator=g)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def _bits(t):
    return t.detach().reshape(-1).view(torch.uint8).clone()


@pytest.mark.parametrize("name", list(SPACES))
def test_prefix_is_copied_bit_for_bit_and_stays_frozen(tmp_path, name):
    space, donor_seq, child_seq, input_shape = SPACES[name]
    repo = ModelRepository(tmp_path)
    donor = _donor(space, donor_seq, repo)
    lcp = common_prefix_len(donor_seq, child_seq)
    child = space.build(child_seq)
    before = {n: _bits(t) for n, t in child.state_dict().items()}
    res = transfer.apply(child, space, child_seq, repo.get_manifest(0), lcp, repo, donor_id=0)
    positions = space.tensor_positions(child_seq)
    expected = {n for n, pos in positions.items() if all(p < lcp for p in pos)}
    assert set(res.transferred) == expected and expected
    assert set(res.inherited) == expected and len(res.reads) == len(expected)
    assert res.bytes_read == sum(r.nbytes for r in res.reads) > 0 and res.cache_hits == 0
    assert all(r.owner_id == 0 and r.position == max(positions[n], default=-1)
               for r, n in zip(res.reads, res.transferred))
    donor_state = donor.state_dict()
    _train(child, input_shape)
    params = dict(child.named_parameters())
    after = child.state_dict()
    for n in expected:
        assert torch.equal(_bits(after[n]), _bits(donor_state[n])), n
        if n in params:
            assert not params[n].requires_grad
    changed = [n for n in params if n not in expected and not torch.equal(_bits(after[n]), before[n])]
    trainable = [n for n in params if n not in expected]
    assert trainable and changed == trainable
    put = repo.put(1, child_seq, 0.6, child.state_dict(), inherited=res.inherited)
    assert put.rewritten == [] and put.tensors_inherited == len(expected)
    assert put.tensors_written == len(after) - len(expected)
    assert (tmp_path / "tensors/1.safetensors").stat().st_size < (tmp_path / "tensors/0.safetensors").stat().st_size
    reread = repo.load(1)
    assert all(torch.equal(reread[n], after[n]) for n in after)


@pytest.mark.parametrize("name", list(SPACES))
def test_fine_tune_unfreezes_and_owns_new_versions(tmp_path, name):
    space, donor_seq, child_seq, input_shape = SPACES[name]
    repo = ModelRepository(tmp_path)
    donor = _donor(space, donor_seq, repo)
    lcp = common_prefix_len(donor_seq, child_seq)
    child = space.build(child_seq)
    res = transfer.apply(child, space, child_seq, repo.get_manifest(0), lcp, repo, fine_tune=True)
    assert res.transferred and res.inherited == {} and res.bn_hooks == []
    donor_state = donor.state_dict()
    copied = child.state_dict()
    assert all(torch.equal(copied[n], donor_state[n]) for n in res.transferred)
    _train(child, input_shape)
    params = dict(child.named_parameters())
    moved = [n for n in res.transferred if n in params and not torch.equal(params[n], donor_state[n])]
    assert moved and all(params[n].requires_grad for n in res.transferred if n in params)
    put = repo.put(1, child_seq, 0.6, child.state_dict(), inherited=res.inherited)
    assert put.tensors_inherited == 0


def test_lcp_zero_transfers_only_position_free_tensors(tmp_path):
    space, donor_seq, _, input_shape = SPACES["nb201"]
    repo = ModelRepository(tmp_path)
    _donor(space, donor_seq, repo)
    child_seq = (0, 0, 0, 0, 0, 0)
    child = space.build(child_seq)
    res = transfer.apply(child, space, child_seq, repo.get_manifest(0), 0, repo)
    assert res.transferred and all(n.startswith("stem.") for n in res.transferred)
    assert all(r.position == -1 for r in res.reads)
    assert len(transfer.frozen_bn_modules(child, res.transferred)) == 1
    assert not child.stem[1].training
    _train(child, input_shape, steps=2)


def test_corrupt_donor_leaves_model_untouched(tmp_path):
    space, donor_seq, child_seq, _ = SPACES["attn"]
    repo = ModelRepository(tmp_path)
    _donor(space, donor_seq, repo)
    manifest = repo.get_manifest(0)
    path = tmp_path / "tensors/0.safetensors"
    blob = bytearray(path.read_bytes())
    blob[-3] ^= 0xFF  # the last tensor's data
    path.write_bytes(bytes(blob))
    child = space.build(child_seq)
    before = {n: t.clone() for n, t in child.state_dict().items()}
    with pytest.raises(CorruptTensor) as err:
        transfer.apply(child, space, child_seq, manifest, len(child_seq), ModelRepository(tmp_path))
    assert err.value.model_id == 0 and str(path) in str(err.value)
    assert all(torch.equal(before[n], t) for n, t in child.state_dict().items())
    assert all(p.requires_grad for p in child.parameters())


def test_cache_serves_the_second_transfer(tmp_path):
    space, donor_seq, child_seq, _ = SPACES["nb201"]
    repo = ModelRepository(tmp_path / "repo")
    _donor(space, donor_seq, repo)
    cache = TensorCache(tmp_path / "cache", 1 << 20, "lru")
    lcp = common_prefix_len(donor_seq, child_seq)
    first = transfer.apply(space.build(child_seq), space, child_seq, repo.get_manifest(0), lcp, repo, cache=cache)
    second_model = space.build(child_seq)
    second = transfer.apply(second_model, space, child_seq, repo.get_manifest(0), lcp, repo, cache=cache)
    assert first.cache_hits == 0 and first.bytes_read > 0
    assert second.cache_hits == len(second.transferred) and second.bytes_read == 0
    assert all(r.cache_hit for r in second.reads)
    assert second.summary()["cache_hits"] == len(second.transferred) and second.summary()["bytes_read"] == 0
    columns = second.read_columns()  # a worker's report: one list per column, whatever the number of reads
    assert list(columns) == list(READ_COLUMNS) and columns["tensor_id"] == second.tensor_ids
    assert columns["cache_hit"] == [True] * len(second.reads) and columns["nbytes"] == [r.nbytes for r in second.reads]
    reference = repo.load(0, second.transferred)
    assert all(torch.equal(second_model.state_dict()[n], reference[n]) for n in second.transferred)


# --------------------------------------------------------------------------- skip-store
@pytest.mark.parametrize("P,s", [(100, 25), (20, 5), (10, 10), (7, 1), (50, 3)])
def test_donor_probability_bound_matches_scipy(P, s):
    for lam in range(1, P + 1):
        expected = hypergeom.pmf(0, P, P - lam, s)
        assert transfer.donor_probability_bound(P, lam, s) == pytest.approx(expected, abs=1e-12)
    assert [transfer.should_store(P, lam, s) for lam in range(1, s)] == [False] * (s - 1)
    assert transfer.should_store(P, s, s) and transfer.donor_probability_bound(P, P, s) == 1.0


def test_should_store_threshold_and_rank():
    assert transfer.should_store(100, 90, 25, threshold=0.01)
    assert not transfer.should_store(100, 60, 25, threshold=0.01)
    assert transfer.rank_from_bottom(0.5, [0.1, 0.5, 0.9, None]) == 3
    with pytest.raises(ValueError):
        transfer.donor_probability_bound(10, 0, 3)
    assert transfer.donor_probability_bound(3, 2, 5) == 0.0  # s > P: the whole population is drawn


def test_a_fully_inherited_child_reports_zero_epochs_trained(tmp_path):
    """A clone of its donor has nothing left to train: the trace must not claim the configured epochs."""
    from evotrace.config import defaults
    from evotrace.search.train import train_candidate

    training = {**defaults("training"), "batch_size": 4}
    space, donor_seq, child_seq, input_shape = SPACES["attn"]
    repo = ModelRepository(tmp_path)
    _donor(space, donor_seq, repo)
    g = torch.Generator().manual_seed(0)
    data = {"x_train": torch.randn(input_shape, generator=g), "y_train": torch.tensor([0, 1] * 4),
            "x_val": torch.randn(input_shape, generator=g), "y_val": torch.tensor([1, 0] * 4)}
    clone = space.build(donor_seq)
    res = transfer.apply(clone, space, donor_seq, repo.get_manifest(0), len(donor_seq), repo, donor_id=0)
    assert not any(p.requires_grad for p in clone.parameters()) and res.transferred
    assert train_candidate(clone, data, 3, training, torch.device("cpu"), 0).epochs == 0
    child = space.build(child_seq)
    transfer.apply(child, space, child_seq, repo.get_manifest(0), common_prefix_len(donor_seq, child_seq), repo)
    assert train_candidate(child, data, 3, training, torch.device("cpu"), 0).epochs == 3
