"""RQ1 tables on a hand-made trace with known answers, and the figures drawn from them."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from evotrace.analysis import rq1
from evotrace.figures import rq1 as figures
from evotrace.figures.export import save

REPORT = Path(__file__).resolve().parents[1] / "workflow" / "report"

# run "a": L = 3 positions with 2, 3, 2 choices
#  job stage seq      parent mut donor prefix status
ROWS_A = [
    (0, 1, [0, 1, 0], None, None, None, None, "ok"),
    (1, 1, [0, 1, 1], None, None, 0, 2, "ok"),
    (2, 1, [1, 2, 0], None, None, None, None, "ok"),
    (3, 2, [0, 2, 1], 1, 1, 1, 1, "ok"),
    (4, 2, [1, 2, 1], 2, 2, 2, 2, "ok"),
    (5, 2, [0, 1, 0], 1, 2, 0, 3, "ok"),
    (6, 2, [1, 1, 0], 0, 0, None, None, "failed"),
]
ROWS_B = [(0, 1, [1, 0, 0], None, None, None, None, "ok"), (1, 1, [1, 0, 1], None, None, None, None, "ok")]


def make_trace():
    rows = [("a", *r) for r in ROWS_A] + [("b", *r) for r in ROWS_B]
    df = pd.DataFrame(rows, columns=["run", "job_id", "stage", "arch_seq", "parent_id", "mutation_pos",
                                     "donor_id", "prefix_len", "status"])
    for col in ("parent_id", "mutation_pos", "donor_id", "prefix_len"):
        df[col] = df[col].astype("Int64")
    df["arch_seq"] = [np.asarray(s, dtype=np.int16) for s in df["arch_seq"]]
    return df


PARAMS = {
    "analysis": {"trie": {"runs": ["a", "b"], "min_fraction": 0.2}},
    "runs": {"a": {"transfer": True, "num_choices": [2, 3, 2], "population": 3, "sample": 2},
             "b": {"transfer": False, "num_choices": [2, 3, 2], "population": 3, "sample": 2}},
}


@pytest.fixture(scope="module")
def tables():
    trace = make_trace()
    return {name: fn(trace, pd.DataFrame(), PARAMS) for name, fn in rq1.TABLES.items()}


def test_trie_counts_prunes_and_colours(tables):
    t = tables["trie"]
    a = t[t["run"] == "a"].set_index("prefix")
    assert list(a.index) == ["", "0", "1", "0-1", "1-2", "0-1-0"]
    assert a["candidates"].tolist() == [7, 4, 3, 3, 2, 2]
    assert a["transfers"].tolist() == [4, 3, 1, 2, 1, 1]
    assert a["depth"].tolist() == [0, 1, 1, 2, 2, 3]
    assert a.loc["0-1-0", "fraction"] == pytest.approx(2 / 7)
    assert a.loc["0-1", "transfer_fraction"] == pytest.approx(0.5)
    nodes = a.reset_index().set_index("node")
    assert nodes.loc[a.loc["0-1-0", "parent_node"], "prefix"] == "0-1"
    assert a.loc["", "parent_node"] == -1
    b = t[t["run"] == "b"]
    assert b["prefix"].tolist() == ["", "1", "1-0", "1-0-0", "1-0-1"]
    assert b["transfers"].sum() == 0


def test_trie_keeps_exactly_min_fraction():
    trace = make_trace()
    params = {**PARAMS, "analysis": {"trie": {"min_fraction": 2 / 7}}}
    a = rq1.trie(trace[trace["run"] == "a"], pd.DataFrame(), params)
    assert a["prefix"].tolist() == ["", "0", "1", "0-1", "1-2", "0-1-0"]
    params = {**PARAMS, "analysis": {"trie": {"min_fraction": 0.3}}}
    assert rq1.trie(trace[trace["run"] == "a"], pd.DataFrame(), params)["prefix"].tolist() == ["", "0", "1", "0-1"]


def test_choice_frequency(tables):
    f = tables["choice_frequency"]
    a = f[f["run"] == "a"].set_index(["position", "choice"])
    assert len(a) == 2 + 3 + 2
    assert a.loc[(0, 0), ["candidates", "stage1", "stage2"]].tolist() == [4, 2, 2]
    assert a.loc[(1, 0), "candidates"] == 0
    assert a.loc[(1, 1), "fraction"] == pytest.approx(4 / 7)
    assert a.loc[(0, 1), "stage1_fraction"] == pytest.approx(1 / 3)
    assert a.loc[(1, 2), "uniform"] == pytest.approx(1 / 3)
    assert a.groupby("position")["fraction"].sum().to_numpy() == pytest.approx([1, 1, 1])


def test_mutation_positions_against_uniform(tables):
    h = tables["mutation_positions"]
    a = h[h["run"] == "a"]
    assert a["mutations"].tolist() == [1, 1, 2]
    assert a["expected"].to_numpy() == pytest.approx([4 / 3] * 3)
    u = tables["mutation_uniformity"].set_index("run")
    assert u.loc["a", "chisq"] == pytest.approx(0.5)
    assert u.loc["a", "dof"] == 2
    assert u.loc["a", "p_value"] == pytest.approx(math.exp(-0.25))
    assert u.loc["a", "p_value"] == pytest.approx(stats.chi2.sf(0.5, 2))
    assert np.isnan(u.loc["b", "p_value"]) and u.loc["b", "mutations"] == 0


def test_prefix_length_against_uniform_mutation(tables):
    d = tables["prefix_length"]
    assert set(d["run"]) == {"a"}  # run b does not transfer
    assert d["candidates"].tolist() == [1, 1, 1, 1]  # 0 (no donor), 1, 2, and 3 (clipped at L)
    assert d["expected_fraction"].to_numpy() == pytest.approx([1 / 3, 1 / 3, 1 / 3, 0])
    assert d["expected"].to_numpy() == pytest.approx([4 / 3, 4 / 3, 4 / 3, 0])
    s = tables["transfer_summary"].set_index("run").loc["a"]
    assert (s["candidates"], s["transfers"], s["positions"]) == (4, 3, 3)
    assert s["mean_prefix_len"] == pytest.approx(1.5)
    assert s["mean_mutation_pos"] == pytest.approx(1.25)
    assert s["expected_mean_prefix_len"] == pytest.approx(1.0)
    assert s["expected_transferred_fraction"] == pytest.approx(1 / 3)


def test_uniform_mutation_gives_uniform_parent_prefix():
    """The derivation behind prefix_length: a child mutated at a uniform m shares exactly m positions."""
    rng = np.random.default_rng(0)
    L, n = 5, 20000
    parents = rng.integers(0, 4, size=(n, L))
    m = rng.integers(0, L, size=n)
    children = parents.copy()
    children[np.arange(n), m] = (parents[np.arange(n), m] + rng.integers(1, 4, size=n)) % 4
    lcp = np.argmax(children != parents, axis=1)
    assert (lcp == m).all()
    assert np.bincount(lcp, minlength=L) / n == pytest.approx(np.full(L, 1 / L), abs=0.02)


def test_figures_from_tables(tables, tmp_path, via_csv):
    loaded = via_csv(tables, tmp_path)
    fig = figures.trie(loaded, PARAMS)
    assert [a.text for a in fig.layout.annotations] == ["a", "b"]
    labels = [label for trace in fig.data if trace.text is not None for label in trace.text]
    assert "0 · 57.1%" in labels and "0 · 28.6%" in labels and "root" in labels
    assert fig.layout.coloraxis.cmax == 3
    fig = figures.mutation_positions(loaded, PARAMS)
    assert any("χ²=0.50" in a.text for a in fig.layout.annotations)
    assert [t.type for t in fig.data] == ["bar", "scatter", "bar", "scatter"]
    fig = figures.prefix_length(loaded, PARAMS)
    assert len(fig.data) == 2 and "mean 1.50 vs 1.00" in fig.layout.annotations[0].text
    fig = figures.choice_frequency(loaded, PARAMS)
    assert [t.type for t in fig.data] == ["heatmap", "heatmap"]
    assert set(figures.CAPTIONS) == set(figures.FIGURES)
    assert all((REPORT / caption).is_file() for caption in figures.CAPTIONS.values())


def test_trie_export(tables, tmp_path):
    paths = [tmp_path / "trie.html", tmp_path / "trie.png"]
    save(figures.trie(tables, PARAMS), paths)
    assert all(p.stat().st_size > 1000 for p in paths)


def test_a_biased_run_is_judged_against_its_own_mutation_weights():
    """A run that mutates late positions on purpose (search.mutation.positions) is compared with those
    weights, not with uniform: its histogram then fits, and the prefix it inherits is expected longer."""
    params = {"analysis": PARAMS["analysis"],
              "runs": {"a": {**PARAMS["runs"]["a"], "mutation": {"positions": [0, 1, 3]}},
                       "b": PARAMS["runs"]["b"]}}
    trace = make_trace()
    h = rq1.mutation_positions(trace, pd.DataFrame(), params)
    a = h[h["run"] == "a"]
    assert a["expected_fraction"].to_numpy() == pytest.approx([0, 1 / 4, 3 / 4])
    assert a["expected"].to_numpy() == pytest.approx([0, 1, 3])
    u = rq1.mutation_uniformity(trace, pd.DataFrame(), params).set_index("run")
    assert u.loc["a", "weights"] == "weights 0-1-3" and u.loc["a", "dof"] == 1
    assert u.loc["a", "chisq"] == math.inf and u.loc["a", "p_value"] == 0  # a mutation at weight 0
    late = trace[trace["job_id"] != 6]  # without it, 3 mutations at [0, 1, 2] against [0, 3/4, 9/4]
    u = rq1.mutation_uniformity(late, pd.DataFrame(), params).set_index("run")
    assert u.loc["a", "chisq"] == pytest.approx((1 / 4) ** 2 / (3 / 4) + (1 / 4) ** 2 / (9 / 4))
    assert u.loc["a", "p_value"] == pytest.approx(stats.chi2.sf(1 / 9, 1))
    s = rq1.transfer_summary(trace, pd.DataFrame(), params).set_index("run").loc["a"]
    assert s["expected_mean_prefix_len"] == pytest.approx(1 / 4 + 2 * 3 / 4)
    d = rq1.prefix_length(trace, pd.DataFrame(), params)
    assert d["expected_fraction"].to_numpy() == pytest.approx([0, 1 / 4, 3 / 4, 0])
