"""RQ4 tables on a hand-made trace with known answers, the bound against scipy and math.comb, a
simulated correct Algorithm 1, and the figures drawn from the tables."""

from math import comb

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from evotrace.analysis import rq4
from evotrace.figures import rq4 as figures
from evotrace.figures.export import save

REPORT = Path(__file__).resolve().parents[1] / "workflow" / "report"

# p = 3, s = 2. Job 6's parent (job 3) ranks last among jobs 2, 3, 5 when drawn: a planted violation.
#  job stage status   quality insert version parent donor end_time
ROWS = [
    (0, 1, "ok", 0.5, 0, 0, None, None, 3.0),
    (1, 1, "ok", 0.2, 1, 0, None, None, 1.0),
    (2, 1, "ok", 0.8, 2, 0, None, None, 2.0),
    (3, 2, "ok", 0.6, 3, 3, 2, 2, 4.0),
    (4, 2, "failed", None, None, 3, 0, None, 4.5),
    (5, 2, "ok", 0.9, 4, 4, 2, 3, 5.0),
    (6, 2, "ok", 0.1, 5, 5, 3, 3, 6.0),
]
PARAMS = {"analysis": {}, "runs": {"q": {"population": 3, "sample": 2}}}


def make_trace(rows=ROWS):
    df = pd.DataFrame(rows, columns=["job_id", "stage", "status", "quality", "insert_seq", "population_version",
                                     "parent_id", "donor_id", "end_time"])
    df.insert(0, "run", "q")
    for col in ("insert_seq", "population_version", "parent_id", "donor_id"):
        df[col] = df[col].astype("Int64")
    df["quality"] = df["quality"].astype(float)
    df["arch_seq"] = [[int(j) % 2, 0] for j in df["job_id"]]
    df["prefix_len"] = df["donor_id"].notna().astype("Int64")
    return df


@pytest.fixture(scope="module")
def tables():
    trace = make_trace()
    return {name: fn(trace, pd.DataFrame(), PARAMS) for name, fn in rq4.TABLES.items()}


def test_quality_and_cumulative_max(tables):
    q = tables["quality"]
    assert q["job_id"].tolist() == [1, 2, 0, 3, 5, 6]
    assert q["completion"].tolist() == [1, 2, 3, 4, 6, 7]  # the failed job 4 finished 5th
    assert q["cummax"].tolist() == [0.2, 0.8, 0.8, 0.8, 0.9, 0.9]
    assert q["improvement"].tolist() == [True, True, False, False, True, False]


def test_improvement_steps(tables):
    i = tables["improvements"]
    assert i["job_id"].tolist() == [1, 2, 5]
    assert i["step"].tolist() == [1, 2, 3]
    assert i["end_time"].tolist() == [1.0, 2.0, 5.0]
    assert np.isnan(i["gain"].iloc[0])
    assert i["gain"].iloc[1:].to_numpy() == pytest.approx([0.6, 0.1])


def test_quality_summary(tables):
    s = tables["quality_summary"].set_index("run").loc["q"]
    assert (s["candidates"], s["ok"], s["failed"], s["improvements"]) == (7, 6, 1, 3)
    assert s["trim_low"] == pytest.approx(0.55) and s["median"] == pytest.approx(0.55)
    assert s["hidden"] == 3
    assert (s["min"], s["max"]) == (0.1, 0.9)
    assert s["distinct_qualities"] == 6


def test_insertion_rank_and_bound(tables):
    r = tables["insertion_rank"]
    assert r["job_id"].tolist() == [0, 1, 2, 3, 5, 6]
    assert r["population"].tolist() == [1, 2, 3, 3, 3, 3]
    assert r["rank"].tolist() == [1, 1, 3, 2, 3, 1]
    assert r["transfer_bound"].to_numpy() == pytest.approx([1, 0, 1, 1 / 3, 1, 0])
    assert r["children"].tolist() == [1, 0, 2, 1, 0, 0]
    assert r["donations"].tolist() == [0, 0, 1, 2, 0, 0]
    assert r["was_parent"].tolist() == [True, False, True, True, False, False]
    assert r["was_donor"].tolist() == [False, False, True, True, False, False]


def test_bound_matches_scipy_and_comb():
    for P in range(5, 13):
        for s in (2, 3, 5):
            lam = np.arange(1, P + 1)
            got = rq4.transfer_bound(np.full(P, P), lam, np.full(P, s))
            assert got == pytest.approx([comb(int(k), s) / comb(P, s) for k in lam])
            assert got == pytest.approx(stats.hypergeom(P, P - lam, s).pmf(0))
            assert (got[: s - 1] == 0).all()


def test_window_count_ties_and_edges():
    values = np.array([0.5, 0.5, 0.2, 0.7])
    start, stop = np.array([0, 1, 3, 2]), np.array([2, 4, 3, 4])
    assert rq4.window_count_le(values, start, stop, np.array([0.5, 0.5, 1.0, 0.2])).tolist() == [2, 2, 0, 1]


def test_rank_outcomes(tables):
    o = tables["rank_outcomes"].set_index("rank")
    assert o["candidates"].tolist() == [1, 1, 2]
    assert o["parents"].tolist() == [0, 1, 1]
    assert o["donor_fraction"].tolist() == [0.0, 1.0, 0.5]
    assert o["transfer_bound"].to_numpy() == pytest.approx([0, 1 / 3, 1])


def test_worst_parents_catches_the_planted_violation(tables):
    w = tables["worst_parents"].set_index("run").loc["q"]
    assert (w["draws"], w["parent_outside"], w["worst_draws"]) == (4, 0, 1)
    assert w["worst_draw_fraction"] == pytest.approx(0.25)
    assert (w["inserted_worst"], w["inserted_worst_parents"]) == (1, 0)


def test_worst_parents_flags_a_parent_outside_the_population():
    rows = [r if r[0] != 6 else (6, 2, "ok", 0.1, 5, 5, 0, 3, 6.0) for r in ROWS]
    w = rq4.worst_parents(make_trace(rows), pd.DataFrame(), PARAMS).iloc[0]
    assert (w["parent_outside"], w["worst_draws"]) == (1, 0)


def simulate(n=400, p=20, s=4, seed=0):
    """A sequential, correct Algorithm 1 with random qualities and a few failures."""
    rng = np.random.default_rng(seed)
    rows, members, quality = [], [], {}
    for job in range(n):
        version = len(members)
        parent = None
        if job >= p:
            sample = rng.choice(members[-p:], size=s, replace=False)
            parent = int(max(sample, key=lambda j: quality[j]))
        if job >= p and rng.random() < 0.05:
            rows.append((job, 2, "failed", None, None, version, parent, parent, float(job)))
            continue
        quality[job] = float(rng.random())
        rows.append((job, 1 if job < p else 2, "ok", quality[job], len(members), version, parent, parent, float(job)))
        members.append(job)
    return make_trace(rows), {"analysis": {}, "runs": {"q": {"population": p, "sample": s}}}


def test_correct_algorithm_never_picks_the_worst():
    trace, params = simulate()
    w = rq4.worst_parents(trace, pd.DataFrame(), params).iloc[0]
    assert w["draws"] == 400 - 20
    assert (w["worst_draws"], w["parent_outside"], w["worst_draw_fraction"]) == (0, 0, 0.0)
    r = rq4.insertion_rank(trace, pd.DataFrame(), params)
    assert r["population"].max() == 20 and r["rank"].between(1, 20).all()
    assert (r["transfer_bound"][r["population"] == 20] == 0).sum() == (r["rank"][r["population"] == 20] < 4).sum()


def test_figures_from_tables(tables, tmp_path, via_csv):
    loaded = via_csv(tables, tmp_path)
    trimmed = figures.quality_trimmed(loaded, PARAMS)
    assert [t.name for t in trimmed.data] == ["observed, stage 1", "observed, stage 2", "cumulative max"]
    assert list(trimmed.data[2].y) == [0.2, 0.8, 0.8, 0.8, 0.9, 0.9]
    assert trimmed.layout.yaxis.range[0] == pytest.approx(0.55)
    assert "3 below the axis" in trimmed.layout.annotations[0].text
    full = figures.quality(loaded, PARAMS)
    assert full.layout.yaxis.range is None
    gains = figures.improvements(loaded, PARAMS)
    assert list(gains.data[0].y) == pytest.approx([0.6, 0.1])
    ranks = figures.rank_outcomes(loaded, PARAMS)
    assert "1 of 4 draws" in ranks.layout.annotations[0].text
    assert [t.type for t in ranks.data] == ["bar", "bar", "scatter"]
    assert set(figures.CAPTIONS) == set(figures.FIGURES)
    assert all((REPORT / caption).is_file() for caption in figures.CAPTIONS.values())
    save(trimmed, [tmp_path / "quality_trimmed.html"])
    assert (tmp_path / "quality_trimmed.html").stat().st_size > 1000


def test_figure_runs_choose_the_panels():
    trace = pd.concat([make_trace(), make_trace().assign(run="r2"), make_trace().assign(run="r3")])
    params = {"analysis": {}, "runs": {run: PARAMS["runs"]["q"] for run in ("r3", "q", "r2")}}
    tables = {name: fn(trace, pd.DataFrame(), params) for name, fn in rq4.TABLES.items()}

    def panels(fig):
        return [a.text.split(" ")[0] for a in fig.layout.annotations if a.text.split(" ")[0] in params["runs"]]

    assert panels(figures.quality(tables, params)) == ["r3", "q", "r2"]  # every run, in the config's order
    chosen = {**params, "analysis": {"figure_runs": ["r2", "r3"]}}
    assert panels(figures.quality(tables, chosen)) == ["r3", "r2"]
    assert [t.name for t in figures.improvements(tables, chosen).data] == ["r3", "r2"]


def test_improvements_are_counted_in_end_time_order_everywhere():
    # created 0, 1, 2 with qualities 0.5, 0.7, 0.6; they finish in the order 1, 2, 0
    rows = [(0, 1, "ok", 0.5, 2, 0, None, None, 3.0), (1, 1, "ok", 0.7, 0, 0, None, None, 1.0),
            (2, 1, "ok", 0.6, 1, 0, None, None, 2.0)]
    trace = make_trace(rows)
    params = {"analysis": {}, "runs": {"q": {"population": 3, "sample": 2}}}
    assert rq4.improvements(trace, None, params)["job_id"].tolist() == [1]
    summary = rq4.quality_summary(trace, None, params).set_index("run").loc["q"]
    assert summary["improvements"] == 1  # in creation order it would be 2 (0.5 then 0.7)
    assert summary["distinct_qualities"] == 3


def test_skip_store_cost_separates_donors_from_parents():
    """p = 3, s = 2: job 3 enters a full population as its worst (rank 1 <= s - 1: never a parent) yet
    job 4, a clone of it, takes all 3 positions from it; without job 3 the best donor (job 2) gives 2."""
    #  job stage quality insert version parent donor prefix arch
    rows = [(0, 1, 0.5, 0, 0, None, None, None, [0, 0, 0]), (1, 1, 0.6, 1, 0, None, None, None, [1, 1, 1]),
            (2, 1, 0.7, 2, 0, None, None, None, [2, 2, 2]), (3, 2, 0.1, 3, 3, 2, 2, 2, [2, 2, 1]),
            (4, 2, 0.8, 4, 4, 2, 3, 3, [2, 2, 1])]
    trace = pd.DataFrame(rows, columns=["job_id", "stage", "quality", "insert_seq", "population_version", "parent_id",
                                        "donor_id", "prefix_len", "arch_seq"])
    trace = trace.assign(run="q", status="ok", stored=True, end_time=trace["job_id"] + 1.0)
    for col in ("insert_seq", "population_version", "parent_id", "donor_id", "prefix_len"):
        trace[col] = trace[col].astype("Int64")
    out = rq4.skip_store_cost(trace, None, {"analysis": {}, "runs": {"q": {"population": 3, "sample": 2}}})
    row = out.set_index("run").loc["q"]
    assert (row["worst_models"], row["worst_donors"], row["transfers"], row["from_worst"]) == (1, 1, 2, 1)
    assert row["from_worst_fraction"] == 0.5
    assert (row["mean_prefix_len"], row["mean_prefix_len_without_worst"]) == (3.0, 2.0)
    assert (row["positions_lost"], row["shortened"]) == (1, 1)
    ranks = rq4.insertion_rank(trace, None, {"analysis": {}, "runs": {"q": {"population": 3, "sample": 2}}})
    worst = ranks.set_index("job_id").loc[3]
    assert worst["transfer_bound"] == 0 and not worst["was_parent"] and worst["was_donor"]


def test_bound_counts_ties_as_the_tournament_does():
    """max() keeps the first of equal qualities in the sample's random order, so a member tied with
    every other can win any draw: ties count as not better and the bound is 1, not 0."""
    rows = [(j, 1, "ok", 0.5, j, 0, None, None, float(j)) for j in range(3)]
    ranks = rq4.insertion_rank(make_trace(rows), None, {"analysis": {}, "runs": {"q": {"population": 3, "sample": 2}}})
    last = ranks.set_index("job_id").loc[2]
    assert (last["rank"], last["transfer_bound"]) == (3, 1.0)
