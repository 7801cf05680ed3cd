"""Search spaces: exact sizes, validation, model construction and the tensor -> positions map."""

import json

import numpy as np
import pytest
import torch

from evotrace.cli import main
from evotrace.spaces import AttnSpace, InvalidSequence, NB201Space, make_space
from evotrace.spaces.nb201 import EDGES, OPS


def test_sizes_are_exact_integers():
    assert NB201Space().size == 5**6 == 15_625
    study = AttnSpace(input_blocks=5)
    assert len(study) == 54
    assert study.size == 391**18 * 2**36
    assert str(study.size).startswith("3135") and len(str(study.size)) == 58  # 3.135e57
    assert AttnSpace(input_blocks=[3, 4], widths=(16, 96, 16)).num_choices[:3] == [31, 2, 31]


def test_describe_prints_the_study_size(capsys):
    assert main(["space", "describe", "--space", "attn", "--input-blocks", "5"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["size"] == 3135172759402435780185574153982715589949045404901369184256
    assert described["variables"] == 54 and described["nodes"][0] == {"name": "in0.d0", "choices": 391}
    assert main(["space", "describe", "--space", "nb201", "--options", '{"C": 16, "N": 5}']) == 0
    assert json.loads(capsys.readouterr().out)["size"] == 15625


@pytest.mark.parametrize(
    "seq, message",
    [
        ([0, 1, 2], "has 3 choices, the space has 6"),
        ([0, 1, 2, 3, 4, 5], "position 5 (edge2->3) has choice 5, valid choices are 0..4"),
        ([0, 1, 2, -1, 4, 0], "position 3 (edge0->3) has choice -1"),
        ([0, 1, 2, 1.5, 4, 0], "position 3 (edge0->3) is 1.5, not an int"),
        ([0, 1, True, 1, 4, 0], "is True, not an int"),
        (7, "must be a list of ints"),
    ],
)
def test_validation_names_the_problem(seq, message):
    with pytest.raises(InvalidSequence, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        NB201Space().validate(seq)


def test_attn_validation_names_subgraph_node():
    space = AttnSpace(input_blocks=[4, 4], widths=(8, 16, 8))
    seq = [0] * len(space)
    seq[10] = 2
    with pytest.raises(InvalidSequence, match=r"position 10 \(in1.s0_0\) has choice 2, valid choices are 0..1"):
        space.validate(seq)


def test_nb201_arch_string_round_trip_uses_official_edge_order():
    space = NB201Space()
    seq = (3, 3, 4, 1, 3, 1)
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    assert space.to_arch_str(seq) == arch
    assert space.from_arch_str(arch) == seq
    assert EDGES == ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
    assert OPS == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    with pytest.raises(InvalidSequence, match="unknown op"):
        space.from_arch_str(arch.replace("avg_pool_3x3", "max_pool"))
    with pytest.raises(InvalidSequence, match="not a 4-node"):
        space.from_arch_str("|nor_conv_3x3~0|+|nor_conv_3x3~0|")


@pytest.mark.parametrize("seed", range(4))
def test_nb201_build_random_and_extreme(seed):
    space = NB201Space(C=4, N=2, input_shape=(1, 8, 8), num_classes=10)
    rng = np.random.default_rng(seed)
    for seq in [space.sample(rng), (0,) * 6, (4,) * 6, (3,) * 6]:
        model = space.build(seq)
        assert model(torch.randn(3, 1, 8, 8)).shape == (3, 10)
        again = space.build(seq)
        assert list(model.state_dict()) == list(again.state_dict())
        assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in again.parameters())


def test_nb201_parameter_count_depends_only_on_convolutions():
    space = NB201Space(C=4, N=1, input_shape=(1, 8, 8), num_classes=10)
    count = lambda seq: sum(p.numel() for p in space.build(seq).parameters())  # noqa: E731
    base = count((0,) * 6)
    # one 3x3 conv edge: per cell (C 4, 8, 16) a 3x3 conv (c*c*9) and a BatchNorm (2c)
    assert count((3, 0, 0, 0, 0, 0)) - base == sum(c * c * 9 + 2 * c for c in (4, 8, 16))
    assert count((2, 0, 0, 0, 0, 0)) - base == sum(c * c + 2 * c for c in (4, 8, 16))
    assert count((1, 4, 1, 4, 1, 4)) == base


def test_nb201_position_map_follows_the_cell_graph():
    space = NB201Space(C=4, N=2, input_shape=(1, 8, 8))
    positions = space.tensor_positions((3,) * 6)
    assert positions["stem.0.weight"] == frozenset()
    assert positions["cells.0.edges.0.conv.weight"] == {0}
    assert positions["cells.0.edges.2.conv.weight"] == {0, 2}  # 1->2 reads node 1 = edge 0->1
    assert positions["cells.0.edges.5.conv.weight"] == {0, 1, 2, 5}
    assert positions["cells.1.edges.0.conv.weight"] == set(range(6))  # second cell sees all of the first
    assert positions["classifier.weight"] == set(range(6))
    assert set(positions) == set(space.build((3,) * 6).state_dict())


def test_attn_build_shapes_skips_and_positions():
    space = AttnSpace(input_blocks=[5, 7], widths=(8, 24, 8), num_classes=2)
    rng = np.random.default_rng(0)
    for seq in [space.sample(rng) for _ in range(5)] + [(0,) * len(space), tuple(n - 1 for n in space.num_choices)]:
        model = space.build(seq)
        assert model(torch.randn(4, 12)).shape == (4, 2)
        positions = space.tensor_positions(seq, model)
        assert set(positions) == set(model.state_dict())
        for name, pos in positions.items():
            if name.startswith("blocks.1."):
                assert min(pos) >= 9 and max(pos) < 18, name  # second input sub-graph only
            if name.startswith("output."):
                assert pos == set(range(27))
    # all identity, every skip on: the only tensors are the output layer (identity keeps widths equal)
    seq = [0, 1, 0, 1, 1, 0, 1, 1, 1] * 3
    assert sorted(space.build(seq).state_dict()) == ["output.bias", "output.weight"]
    # a width change on d0 with the input skip on needs a projection, created at s0_0
    seq = [1, 1] + [0] * 16 + [1] + [0] * 8
    positions = space.tensor_positions(seq)
    assert positions["blocks.0.layers.0.proj.0.weight"] == {0, 1}
    assert positions["merge.layers.0.dense.0.weight"] == set(range(19))


def test_make_space_rejects_unknown_names_and_options():
    with pytest.raises(ValueError, match="unknown search space 'resnet'"):
        make_space("resnet")
    with pytest.raises(ValueError, match="unknown activation"):
        AttnSpace(activations=("gelu",))
    with pytest.raises(ValueError, match="widths must be"):
        AttnSpace(widths=(96, 16, 16))


@pytest.mark.parametrize("space", [
    NB201Space(C=4, N=2, input_shape=(1, 8, 8), num_classes=10),
    AttnSpace(input_blocks=[7, 5], widths=(4, 12, 4), num_classes=2),
], ids=["nb201", "attn"])
def test_tensor_layout_matches_the_built_model(space):
    """The simulator names, sizes and places tensors without building models: it must agree with
    the real state_dict and tensor_positions for any sequence."""
    rng = np.random.default_rng(3)
    for _ in range(40):
        seq = space.sample(rng)
        model = space.build(seq)
        state = model.state_dict()
        layout = space.tensor_layout(seq)
        assert [name for name, _, _ in layout] == list(state)
        positions = space.tensor_positions(seq, model)
        assert {name: pos for name, pos, _ in layout} == {n: max(p, default=-1) for n, p in positions.items()}
        assert {name: nbytes for name, _, nbytes in layout} == {n: t.nbytes for n, t in state.items()}
