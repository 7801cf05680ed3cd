"""RQ2 tables on hand-made traces with known answers, the quanta bound against scipy, and the figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.integrate import quad
from scipy.stats import norm

from evotrace.analysis import rq2
from evotrace.figures import rq2 as fig2

REPORT = Path(__file__).resolve().parents[1] / "workflow" / "report"

ANALYSIS = {"reuse_k": 1, "coaccess_dt": 5.0, "quanta": {"s": [1, 2, 4], "w": [2, 4]}}
PARAMS = {"analysis": ANALYSIS, "runs": {"a": {"population": 4, "sample": 2}, "b": {"population": 4, "sample": 2}}}


def reads(rows):
    return pd.DataFrame(rows, columns=["run", "job_id", "worker", "start_time", "tensor_id"]).assign(
        owner_id=0, position=0, nbytes=8, cache_hit=False
    )


def candidates(rows):
    """rows: (run, job_id, worker, start_time, end_time, train_seconds)."""
    df = pd.DataFrame(rows, columns=["run", "job_id", "worker", "start_time", "end_time", "train_seconds"])
    return df.assign(status="ok", stage=2)


@pytest.fixture
def popularity_trace():
    """Tensor A is read 5 times, B 4, C 3, X and Y 2 each (tie: X first), E once."""
    counts = {"A": 5, "B": 4, "C": 3, "X": 2, "Y": 2, "E": 1}
    rows, job = [], 0
    for tensor, n in counts.items():
        for i in range(n):
            rows.append(("a", job, i % 3, float(job), tensor))
            job += 1
    return reads(rows)


def test_popular_tensor_reads_keeps_ranks_2_to_4(popularity_trace):
    points = rq2.popular_tensor_reads(None, popularity_trace, PARAMS)
    assert points.groupby("rank")["tensor_id"].first().to_dict() == {2: "B", 3: "C", 4: "X"}
    assert points.groupby("rank")["reads"].first().to_dict() == {2: 4, 3: 3, 4: 2}
    assert len(points) == 9
    assert {"worker", "start_time"} <= set(points.columns)


@pytest.fixture
def reuse_trace():
    """Worker 0 runs jobs 0, 2, 4, 6 (slots 0..3), worker 1 runs jobs 1, 3, 5 (slots 0..2)."""
    cands = candidates([("a", j, j % 2, float(j), float(j) + 1, 1.0) for j in range(7)])
    r = reads(
        [
            ("a", 0, 0, 0.0, "T"),  # next T on worker 0 at slot 2: gap 2 > k
            ("a", 4, 0, 4.0, "T"),  # next at slot 3: reused
            ("a", 6, 0, 6.0, "T"),  # last: not reused
            ("a", 1, 1, 1.0, "U"),  # next U on worker 1 at slot 1: reused
            ("a", 3, 1, 3.0, "U"),
            ("a", 5, 1, 5.0, "T"),  # T on worker 1: worker 0's reads do not count
        ]
    )
    return cands, r


def test_worker_reuse_counts_next_k_candidates_of_the_same_worker(reuse_trace):
    cands, r = reuse_trace
    out = rq2.worker_reuse(cands, r, PARAMS).set_index("worker")
    assert out["reads"].to_dict() == {0: 3, 1: 3}
    assert out["reused"].to_dict() == {0: 1, 1: 1}
    assert out.loc[0, "reuse_fraction"] == pytest.approx(1 / 3)
    wider = rq2.worker_reuse(cands, r, {**PARAMS, "analysis": {**ANALYSIS, "reuse_k": 2}}).set_index("worker")
    assert wider["reused"].to_dict() == {0: 2, 1: 1}


def test_worker_reuse_ignores_repeated_and_unknown_reads(reuse_trace):
    cands, r = reuse_trace
    extra = reads([("a", 4, 0, 4.0, "T"), ("a", 99, 0, 9.0, "T"), ("zz", 0, 0, 0.0, "T")])
    out = rq2.worker_reuse(cands, pd.concat([r, extra], ignore_index=True), PARAMS).set_index("worker")
    assert out["reads"].to_dict() == {0: 3, 1: 3}
    assert out["reused"].to_dict() == {0: 1, 1: 1}
    assert rq2.worker_reuse(cands, r.iloc[:0], PARAMS).empty


@pytest.fixture
def coaccess_trace():
    return reads(
        [
            ("a", 0, 0, 0.0, "T"),  # w1 at 3 and 4 -> 1 other worker
            ("a", 1, 1, 3.0, "T"),  # w0 at 0 -> 1
            ("a", 2, 1, 4.0, "T"),  # w0 at 0 and 9 (|9 - 4| = dt, inclusive) -> 1
            ("a", 3, 0, 9.0, "T"),  # w1 at 4, w2 at 10 -> 2
            ("a", 4, 2, 10.0, "T"),  # w0 at 9 -> 1 (w1 at 4 is 6 s away)
            ("a", 5, 3, 0.0, "U"),  # alone -> 0
            ("b", 0, 5, 1.0, "T"),  # same tensor id in another run: alone -> 0
        ]
    )


def test_coaccess_counts_distinct_other_workers_within_dt(coaccess_trace):
    counts = rq2._coaccess_counts(coaccess_trace, 5.0).set_index(["run", "job_id"])["other_workers"]
    assert counts.loc["a"].sort_index().tolist() == [1, 1, 1, 2, 1, 0]
    assert counts.loc[("b", 0)] == 0
    dist = rq2.coaccess(None, coaccess_trace, PARAMS)
    a = dist[dist["run"] == "a"].set_index("other_workers")
    assert a["reads"].to_dict() == {0: 1, 1: 4, 2: 1}
    assert a["fraction"].sum() == pytest.approx(1.0)


def test_coaccess_matches_brute_force():
    rng = np.random.default_rng(3)
    n = 300
    r = reads(
        [("a", i, int(rng.integers(0, 6)), float(rng.integers(0, 60)), f"t{rng.integers(0, 4)}") for i in range(n)]
    )
    t, w, g = r["start_time"].to_numpy(), r["worker"].to_numpy(), r["tensor_id"].to_numpy()
    expected = [len({w[j] for j in range(n) if g[j] == g[i] and abs(t[j] - t[i]) <= 5.0} - {w[i]}) for i in range(n)]
    got = rq2._coaccess_counts(r, 5.0).set_index("job_id")["other_workers"].sort_index()
    assert got.tolist() == expected


def test_locality_summarizes_both_measures(reuse_trace, coaccess_trace):
    cands, r = reuse_trace
    out = rq2.locality(cands, r, PARAMS).set_index("run")
    assert out.loc["a", "reads"] == 6
    assert out.loc["a", "reuse_fraction"] == pytest.approx(2 / 6)
    assert out.loc["a", "reuse_k"] == 1


def test_blom_is_the_papers_formula():
    r, w = np.array([1, 3, 8]), np.array([8, 8, 8])
    assert rq2.blom(r, w) == pytest.approx(norm.ppf((r - np.pi / 8) / (w - np.pi / 4 + 1)))
    # close to the exact expected maximum of 10 standard normals, by quadrature
    exact = quad(lambda x: 10 * x * norm.pdf(x) * norm.cdf(x) ** 9, -12, 12)[0]
    assert exact == pytest.approx(1.538753, abs=1e-5)
    assert rq2.blom(10, 10) == pytest.approx(exact, abs=0.03)


def test_quanta_wait_grows_with_s_and_matches_simulated_order_statistics():
    s = np.arange(1, 33)
    wait = rq2.quanta_wait(s, 32)
    assert wait[0] == 0.0 and (np.diff(wait) > 0).all()  # waiting for more completions costs more
    # mean of (16th - 1st smallest of 32 standard normals), seeded simulation: 2.039
    draws = np.sort(np.random.default_rng(0).standard_normal((20000, 32)), axis=1)
    simulated = float((draws[:, 15] - draws[:, 0]).mean())
    assert simulated == pytest.approx(2.039, abs=0.02)
    assert rq2.quanta_wait(16, 32) == pytest.approx(simulated, abs=0.03)
    # the study's E(s, w) - E(w, w) is <= 0 in this (smallest-first) convention
    assert (rq2.blom(s, 32) - rq2.blom(32, 32) <= 0).all()


def test_quanta_idle_measures_each_workers_gaps():
    cands = candidates(
        [
            ("a", 0, 1, 0.0, 1.0, 1.0),
            ("a", 2, 1, 1.5, 2.0, 0.5),  # idle 0.5 on worker 1
            ("a", 3, 1, 2.0, 3.0, 1.0),  # idle 0
            ("a", 1, 2, 0.0, 2.0, 2.0),
            ("a", 4, 2, 3.0, 4.0, 1.0),  # idle 1 on worker 2
            ("b", 0, 1, 0.0, 1.0, 1.0),  # one candidate per worker: no dispatch after a completion
        ]
    )
    params = {**PARAMS, "runs": {**PARAMS["runs"], "a": {**PARAMS["runs"]["a"], "quanta": 2, "workers": 2}}}
    out = rq2.quanta_idle(cands, None, params).set_index("run")
    assert out.index.tolist() == ["a"]
    row = out.loc["a"]
    assert (row["quanta"], row["workers"], row["dispatches"]) == (2, 2, 3)
    assert (row["mean_idle_seconds"], row["median_idle_seconds"]) == (0.5, 0.5)
    assert row["mean_idle_sd"] == pytest.approx(0.5 / np.std([1.0, 0.5, 1.0, 2.0, 1.0], ddof=1))


def test_quanta_delay_is_non_negative_and_zero_for_a_full_quanta():
    s = np.arange(1, 17)
    d = rq2.quanta_delay(s, 16)
    assert d[-1] == 0.0
    assert (np.diff(d) < 0).all() and (d >= 0).all()
    assert rq2.quanta_delay(1, 8) == pytest.approx(2 * norm.ppf((8 - np.pi / 8) / (8 - np.pi / 4 + 1)))


def test_quanta_table_scales_by_training_sd_and_skips_s_above_w():
    cands = candidates(
        [
            ("a", 0, 0, 0.0, 1.0, 1.0),
            ("a", 1, 0, 0.0, 2.0, 2.0),
            ("a", 2, 0, 0.0, 3.0, 3.0),  # sd 1
            ("b", 0, 0, 0.0, 2.0, np.nan),  # no train_seconds: end - start
            ("b", 1, 0, 0.0, 4.0, np.nan),
            ("b", 2, 0, 0.0, 6.0, np.nan),  # sd 2
        ]
    )
    out = rq2.quanta(cands, None, PARAMS)
    a = out[out["run"] == "a"]
    assert list(zip(a["s"], a["w"])) == [(1, 2), (2, 2), (1, 4), (2, 4), (4, 4)]
    assert a["train_sd"].iloc[0] == pytest.approx(1.0)
    assert out.loc[out["run"] == "b", "train_sd"].iloc[0] == pytest.approx(2.0)
    row = out[(out["run"] == "b") & (out["s"] == 1) & (out["w"] == 4)].iloc[0]
    blom = [norm.ppf((r - np.pi / 8) / (4 - np.pi / 4 + 1)) for r in (1, 4)]
    assert row["delay_sd"] == pytest.approx(blom[1] - blom[0])
    assert row["delay_seconds"] == pytest.approx(2.0 * row["delay_sd"])
    assert row["wait_sd"] == 0.0  # s = 1: the first completion
    other = out[(out["run"] == "b") & (out["s"] == 2) & (out["w"] == 4)].iloc[0]
    assert other["wait_seconds"] == pytest.approx(2.0 * (rq2.blom(2, 4) - rq2.blom(1, 4)))


@pytest.fixture
def tables(popularity_trace, reuse_trace, coaccess_trace, tmp_path, via_csv):
    cands, r = reuse_trace
    out = {name: fn(cands, pd.concat([r, coaccess_trace, popularity_trace]), PARAMS) for name, fn in rq2.TABLES.items()}
    out["popular_tensor_reads"] = rq2.popular_tensor_reads(None, popularity_trace, PARAMS)
    return via_csv(out, tmp_path)


def test_figures_draw_the_tables(tables):
    scatter = fig2.FIGURES["tensor_scatter"](tables, PARAMS)
    assert sorted(t.marker.symbol for t in scatter.data) == ["circle", "triangle-up", "x"]
    assert all(t.opacity == 0.5 for t in scatter.data)
    assert sum(len(t.x) for t in scatter.data) == 9
    assert len(fig2.FIGURES["reuse"](tables, PARAMS).data) == 1
    assert len(fig2.FIGURES["coaccess"](tables, PARAMS).data) == 2
    quanta = fig2.FIGURES["quanta"](tables, PARAMS)
    assert {t.name for t in quanta.data} == {"s = 1", "s = 2", "s = 4", "measured idle per dispatch"}
    lines = [t for t in quanta.data if t.name == "s = 4"]
    assert list(lines[0].y) == pytest.approx(list(tables["quanta"].query("run == 'a' and s == 4")["wait_seconds"]))


def test_every_figure_has_a_caption():
    assert set(fig2.CAPTIONS) == set(fig2.FIGURES)
    for name in fig2.CAPTIONS.values():
        text = (REPORT / name).read_text()
        assert name.startswith("rq2_") and len(text.split(".")) >= 4


def test_worker_axes_label_each_worker_only_while_there_are_few(tables):
    """A tick per worker is readable at W=8; at W=1000 it made Chromium spend minutes on one panel."""
    scatter = fig2.FIGURES["tensor_scatter"](tables, PARAMS)
    workers = sorted(int(w) for w in tables["popular_tensor_reads"]["worker"].unique())
    assert list(scatter.layout.yaxis.tickvals) == workers
    reads = tables["popular_tensor_reads"]
    many = pd.concat([reads.assign(worker=reads["worker"] + 20 * i) for i in range(50)], ignore_index=True)
    wide = fig2.FIGURES["tensor_scatter"]({**tables, "popular_tensor_reads": many}, PARAMS)
    assert many["worker"].nunique() > 40 and wide.layout.yaxis.tickvals is None and wide.layout.yaxis.nticks == 20
    reuse = tables["worker_reuse"]
    spread = pd.concat([reuse.assign(worker=reuse["worker"] + 100 * i) for i in range(50)], ignore_index=True)
    assert spread["worker"].nunique() > 40
    assert fig2.FIGURES["reuse"]({**tables, "worker_reuse": spread}, PARAMS).layout.xaxis.tickvals is None
