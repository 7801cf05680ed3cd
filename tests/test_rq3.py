"""RQ3 tables on hand-made traces with known answers, the bounds against direct formulas, the figures
and one export."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evotrace.analysis import rq3
from evotrace.figures import rq3 as fig3
from evotrace.figures.export import save

REPORT = Path(__file__).resolve().parents[1] / "workflow" / "report"

ANALYSIS = {
    "prefix_len": 2,
    "snapshots": [4, 8, 20],
    "tiers": {"tier1_fraction": 0.75, "tier3_max": 1},
    "donor_k_max": 4,
    "popularity_threshold": 2,
    "prefix_window": "created",
}


def frame(rows, **defaults):
    df = pd.DataFrame(rows)
    for key, value in defaults.items():
        if key not in df:
            df[key] = value
    for col in ("parent_id", "donor_id", "insert_seq", "population_version"):
        if col in df:
            df[col] = df[col].astype("Int64")
    return df


@pytest.fixture
def prefix_trace():
    """Run a (p = 4): prefixes (1,0) (0,2) (1,0) (0,1) (1,0) (1,0) (0,2) (1,0) (1,1) (1,0) -> ids by
    lexicographic rank (0,1)=0 (0,2)=1 (1,0)=2 (1,1)=3. Run b (p = 2) has its own ids."""
    a = [(1, 0), (0, 2), (1, 0), (0, 1), (1, 0), (1, 0), (0, 2), (1, 0), (1, 1), (1, 0)]
    b = [(5, 5), (0, 0), (5, 5)]
    inserted = [0, 2, 1, None, 3, 4, 5, 6, 7, 8]  # job 2 finished before job 1; job 3 failed
    rows = [dict(run="a", job_id=j, stage=1 if j < 4 else 2, arch_seq=[*pre, j % 3], insert_seq=inserted[j])
            for j, pre in enumerate(a)]
    rows += [dict(run="b", job_id=j, stage=1, arch_seq=[*pre, 0], insert_seq=j) for j, pre in enumerate(b)]
    params = {
        "analysis": ANALYSIS,
        "runs": {"a": {"population": 4, "sample": 2, "num_choices": [3, 4, 5]}, "b": {"population": 2, "sample": 1}},
    }
    return frame(rows, status="ok"), params


def test_prefix_ids_are_lexicographic_ranks_per_run(prefix_trace):
    c, params = prefix_trace
    pre = rq3.prefixed(c, params)
    assert pre.loc[pre["run"] == "a", "prefix_id"].tolist() == [2, 1, 2, 0, 2, 2, 1, 2, 3, 2]
    assert pre.loc[pre["run"] == "b", "prefix_id"].tolist() == [1, 0, 1]
    legend = rq3.prefix_table(c, None, params)
    a = legend[legend["run"] == "a"].set_index("prefix_id")
    assert a["prefix"].to_dict() == {0: "0-1", 1: "0-2", 2: "1-0", 3: "1-1"}
    assert a["candidates"].to_dict() == {0: 1, 1: 2, 2: 6, 3: 1}


def test_snapshot_windows_hold_the_last_p_candidates_with_tiers(prefix_trace):
    c, params = prefix_trace
    snaps = rq3.prefix_snapshots(c, None, params)
    a = snaps[snaps["run"] == "a"]
    assert sorted(a["seen"].unique()) == [4, 8]  # 20 > N is left out
    first = a[a["seen"] == 4].set_index("prefix_id")
    assert first["count"].to_dict() == {0: 1, 1: 1, 2: 2}
    assert first["tier"].to_dict() == {0: 3, 1: 3, 2: 2}  # 2 < 0.75 * 4 and > tier3_max
    second = a[a["seen"] == 8].set_index("prefix_id")
    assert second["count"].to_dict() == {1: 1, 2: 3}
    assert second["tier"].to_dict() == {1: 3, 2: 1}
    b = snaps[snaps["run"] == "b"]
    assert b.empty  # 4 > N = 3 for run b


def test_frames_cover_the_search_every_p_over_10(prefix_trace):
    c, params = prefix_trace
    frames = rq3.prefix_frames(c, None, params)
    a = frames[frames["run"] == "a"]
    assert sorted(a["seen"].unique()) == list(range(1, 11))  # p = 4: step max(1, round(0.4)) = 1
    assert a[a["seen"] == 2].set_index("prefix_id")["count"].to_dict() == {1: 1, 2: 1}
    assert a[a["seen"] == 2]["window"].iloc[0] == 2
    assert a[a["seen"] == 10].set_index("prefix_id")["count"].to_dict() == {1: 1, 2: 2, 3: 1}
    assert rq3.frame_ends(1000, 100).tolist() == list(range(10, 1001, 10))
    assert rq3.frame_ends(25, 100).tolist() == [10, 20, 25]
    capped = rq3.frame_ends(1_000_000, 100)  # p/10 = 10 would give 100,000 frames: capped at ~MAX_FRAMES
    assert len(capped) <= rq3.MAX_FRAMES + 1 and capped[-1] == 1_000_000 and capped[0] == 5000


def test_tiers_split_each_window(prefix_trace):
    c, params = prefix_trace
    t = rq3.tiers(c, None, params)
    at8 = t[(t["run"] == "a") & (t["seen"] == 8)].set_index("tier")
    assert at8["prefixes"].to_dict() == {1: 1, 2: 0, 3: 1}
    assert at8["candidates"].to_dict() == {1: 3, 2: 0, 3: 1}
    assert at8["share"].sum() == pytest.approx(1.0)


def test_population_window_is_the_last_p_inserted(prefix_trace):
    c, params = prefix_trace
    params = {**params, "analysis": {k: v for k, v in params["analysis"].items() if k != "prefix_window"}}
    snaps = rq3.prefix_snapshots(c, None, params)
    a = snaps[snaps["run"] == "a"]
    # insertion order: jobs 0 2 1 4 | 5 6 7 8 | 9 (job 3 failed) -> prefix ids 2 2 1 2 | 2 1 2 3 | 2
    assert sorted(a["seen"].unique()) == [4, 8]
    assert a[a["seen"] == 4].set_index("prefix_id")["count"].to_dict() == {1: 1, 2: 3}
    assert a[a["seen"] == 4].set_index("prefix_id")["tier"].to_dict() == {1: 3, 2: 1}
    assert a[a["seen"] == 8].set_index("prefix_id")["count"].to_dict() == {1: 1, 2: 2, 3: 1}
    with pytest.raises(KeyError, match="prefix_window"):
        rq3.prefix_snapshots(c, None, {**params, "analysis": {**params["analysis"], "prefix_window": "last"}})


@pytest.fixture
def use_trace():
    """12 candidates created one after the other (insert_seq = population_version = job_id), p = 4,
    sliding windows of 4 ending at 4..8. Donors, parents and tensor reads as listed."""
    donors = {4: 0, 5: 0, 6: 1, 8: 0, 9: 2, 10: 0}
    parents = {5: 2, 6: 2, 7: 4, 9: 6, 10: 7, 11: 7}
    rows = [dict(run="a", job_id=j, donor_id=donors.get(j), parent_id=parents.get(j), insert_seq=j,
                 population_version=j, status="ok", stored=True, arch_seq=[0, 0]) for j in range(12)]
    reads = pd.DataFrame({"run": "a", "job_id": [1, 4, 5, 6], "tensor_id": ["t0", "t0", "t0", "t1"]})
    analysis = {**ANALYSIS, "popularity_window": 4}
    return frame(rows), reads, {"analysis": analysis, "runs": {"a": {"population": 4, "sample": 2}}}


def test_reuse_probability_sliding_window_more_than_k(use_trace):
    c, reads, params = use_trace
    out = rq3.reuse_probability(c, reads, params)
    assert (out["windows"] == 5).all() and (out["window"] == 4).all()
    donor = out[out["role"] == "donor"].set_index("k")
    # at risk: the models stored before each end (4+5+6+7+8); used in the next 4: 2, 2, 3, 2, 2
    assert (donor["base_models"].iloc[0], donor["base_hits"].iloc[0]) == (30, 11)
    assert donor["base_rate"].iloc[0] == pytest.approx(11 / 30)
    # model 0 with 1, 2, 2, 2 uses (all used again); model 1 with 1 use at ends 7 and 8 (not again)
    assert donor["models"].to_dict() == {0: 6, 1: 3, 2: 0, 3: 0, 4: 0}
    assert donor["hits"].to_dict() == {0: 4, 1: 3, 2: 0, 3: 0, 4: 0}
    assert donor.loc[1, "lift"] == pytest.approx(30 / 11)
    parent = out[out["role"] == "parent"].set_index("k")
    # only the 4 members at each end are at risk: model 2 at end 7 is no member any more, so its two uses
    # do not count; hits 1, 2, 2, 2, 2 (model 4 is not a member at end 4, model 6 not at end 6)
    assert (parent["base_models"].iloc[0], parent["base_hits"].iloc[0]) == (20, 9)
    assert parent["models"].to_dict() == {0: 2, 1: 0, 2: 0, 3: 0, 4: 0}
    assert parent["hits"].to_dict() == {0: 1, 1: 0, 2: 0, 3: 0, 4: 0}
    tensor = out[out["role"] == "tensor"].set_index("k")
    # tensors read before each end: 1, 1, 1, 2, 2; t0 read again in the next window at ends 4 and 5 only
    assert (tensor["base_models"].iloc[0], tensor["base_hits"].iloc[0]) == (7, 2)
    assert tensor["models"].to_dict() == {0: 7, 1: 4, 2: 0, 3: 0, 4: 0}
    assert tensor["hits"].to_dict() == {0: 2, 1: 1, 2: 0, 3: 0, 4: 0}
    assert out.loc[out["threshold"], "k"].unique().tolist() == [2]


def _popularity_by_definition(job, ids, n, window, k_max, lo, hi):
    """models/hits/base_hits of rq3._popularity counted end by end and id by id."""
    step = max(1, window // 10)
    models, hits, base_hits = [0] * (k_max + 1), [0] * (k_max + 1), 0
    for end in range(window, n - window + 1, step):
        for i in set(ids.tolist()):
            if not lo[i] <= end < hi[i]:
                continue
            last = int(((ids == i) & (job >= end - window) & (job < end)).sum())
            again = bool(((ids == i) & (job >= end) & (job < end + window)).any())
            base_hits += again
            for k in range(min(last, k_max + 1)):
                models[k] += 1
                hits[k] += again
    return models, hits, base_hits


@pytest.mark.parametrize("window", [4, 7, 25, 30, 105])
@pytest.mark.parametrize("reads_per_chunk", [5, 10_000])
def test_popularity_counts_equal_the_definition_end_by_end(window, reads_per_chunk):
    """Uses merged into blocks of gcd(window, step), eligibility intervals and chunks of ends (5 reads per
    chunk: many chunks) give the counts of every (end, id) pair taken one by one."""
    rng = np.random.default_rng(window)
    n, n_ids = 3 * window + 17, 6
    job = np.sort(rng.integers(0, n, 2 * n))
    ids = rng.choice(n_ids, len(job), p=[0.4, 0.3, 0.1, 0.1, 0.05, 0.05])
    lo = rng.integers(0, n, n_ids)
    hi = np.where(rng.random(n_ids) < 0.5, n + window + 1, lo + rng.integers(0, n, n_ids))
    shuffled = rng.permutation(len(job))
    k_max = max(3, window // 5)
    out = rq3._popularity(job[shuffled], ids[shuffled], n, window, k_max, lo, hi, lambda ends: np.ones(len(ends)),
                          reads_per_chunk=reads_per_chunk)
    models, hits, base_hits = _popularity_by_definition(job, ids, n, window, k_max, lo, hi)
    assert out["models"].tolist() == models and out["hits"].tolist() == hits
    assert out["base_hits"].iloc[0] == base_hits
    assert models[0] > models[-1] and hits[0] > hits[-1]  # small and large counts both occur


def test_birthday_bound_formula():
    assert rq3.birthday_bound(125, 3) == pytest.approx((125**2 * math.factorial(3) * math.log(2)) ** (1 / 3))
    assert rq3.birthday_bound(1e40, 4, p=0.9) == pytest.approx(
        math.exp((3 * math.log(1e40) + math.log(24) + math.log(math.log(10))) / 4)
    )
    assert 22 < rq3.birthday_bound(365, 2) < 23  # the classic birthday problem: 23 people


def test_exact_birthday_sizes_and_probabilities():
    assert rq3.birthday_size(365, 2) == 23 and rq3.birthday_size(365, 3) == 88  # the classic answers
    assert rq3.birthday_size(125, 6) == 197  # the asymptotic formula says 157 (simulated: 198)
    assert rq3.birthday_bound(125, 6) == pytest.approx(157.44, abs=0.01)
    assert rq3.max_count_probability(3, 2, 2) == pytest.approx(1 / 3)  # the second draw repeats the first
    assert rq3.max_count_probability(2, 3, 4) == pytest.approx(1 - 6 / 16)  # only 2+2 keeps both below 3
    assert rq3.max_count_probability(125, 6, 100) == pytest.approx(0.0204, abs=5e-4)  # the study's "6 of 100"
    assert rq3.max_count_probability(5, 2, 6) == 1.0  # pigeonhole


def test_birthday_table_uses_stage1_only(prefix_trace):
    c, params = prefix_trace
    out = rq3.birthday(c, None, params).set_index("run")
    # run a stage 1 (jobs 0-3): (1,0) (0,2) (1,0) (0,1): max count 2; c = 3 * 4
    assert out.loc["a", ["stage1_size", "distinct_prefixes", "max_count"]].tolist() == [4, 3, 2]
    assert out.loc["a", "prefix_space"] == 12
    assert out.loc["a", "bound_p50"] == pytest.approx(math.sqrt(12 * 2 * math.log(2)))
    assert out.loc["a", "next_bound_p50"] == pytest.approx((144 * 6 * math.log(2)) ** (1 / 3))
    # exact: P(some of 12 prefixes twice in 4 draws) = 1 - 12*11*10*9 / 12^4; 50 % reached at 5 draws
    assert out.loc["a", "p_max_count"] == pytest.approx(1 - 12 * 11 * 10 * 9 / 12**4)
    assert out.loc["a", "exact_p50"] == 5
    # run b has no num_choices: the choices seen, 6 and 6, give c = 36
    assert out.loc["b", "prefix_space"] == 36


@pytest.fixture
def lag_trace():
    """p = 4, s = 2. New maxima in insertion order: job 0 (0.5), job 1 (0.7), job 3 (0.9), job 7 (0.95).
    Job 8 failed (never inserted)."""
    rows = [
        # job stage pv  ins  quality parent start end
        (0, 1, 0, 0, 0.5, None, 0.0, 1.0),
        (1, 1, 0, 1, 0.7, None, 0.0, 2.0),
        (2, 1, 0, 2, 0.6, None, 0.0, 3.0),
        (3, 1, 0, 3, 0.9, None, 0.0, 4.0),
        (4, 2, 2, 4, 0.8, 1, 2.5, 5.0),
        (5, 2, 3, 5, 0.3, 1, 3.5, 6.0),
        (6, 2, 4, 6, 0.4, 2, 4.5, 7.0),
        (7, 2, 5, 7, 0.95, 3, 5.5, 8.0),
        (8, 2, 6, None, None, 3, 6.0, 9.0),
        (9, 2, 8, 8, 0.2, 7, 8.5, 10.0),
    ]
    df = pd.DataFrame(
        rows, columns=["job_id", "stage", "population_version", "insert_seq", "quality", "parent_id", "start_time", "end_time"]
    )
    df = frame(df.to_dict("records"), run="a", status="ok")
    df.loc[df["job_id"] == 8, "status"] = "failed"
    return df, {"analysis": ANALYSIS, "runs": {"a": {"population": 4, "sample": 2}}}


def test_improvement_lag_events(lag_trace):
    c, params = lag_trace
    ev = rq3.improvement_lag(c, None, params).set_index("job_id")
    assert ev.index.tolist() == [0, 1, 3, 7]
    assert ev["available_at"].tolist() == [4, 4, 6, 9]
    assert ev["retired_at"].tolist() == [7, 8, 9, pd.NA]
    assert ev["first_child"].tolist() == [pd.NA, 4, 7, 9]
    assert ev["lag"].tolist() == [pd.NA, 1, 2, 1]
    assert ev["superseded"].tolist() == [True, False, False, False]
    assert ev["censored"].tolist() == [False, False, False, False]
    assert ev.loc[[1, 3, 7], "lag_seconds"].tolist() == pytest.approx([0.5, 1.5, 0.5])
    assert (ev["expected_lag"] == 2.0).all()

    assert ev["at_risk"].tolist() == [0, 1, 2, 1]  # job 0: superseded when it became available

    summary = rq3.improvement_lag_summary(c, None, params).set_index("run")
    assert summary.loc["a", ["events", "picked", "censored", "superseded"]].tolist() == [3, 3, 0, 0]
    assert summary.loc["a", "mean_lag"] == pytest.approx(4 / 3)
    assert summary.loc["a", "naive_mean_lag"] == pytest.approx(4 / 3)
    assert summary.loc["a", "median_lag"] == 1.0
    assert summary.loc["a", "mean_lag_seconds"] == pytest.approx(2.5 / 3)


def test_a_best_model_that_retires_unpicked_is_censored(lag_trace):
    c, params = lag_trace
    c = c[c["job_id"] != 9]  # job 7 never becomes a parent
    ev = rq3.improvement_lag(c, None, params).set_index("job_id")
    assert ev.loc[7, "censored"] and not ev.loc[7, "superseded"]
    assert ev.loc[3, "at_risk"] == 2 and np.isnan(ev.loc[7, "at_risk"])  # no creation could sample job 7


def test_kaplan_meier_counts_censored_lags():
    # lags 1, 2, 3 observed; 3 and 5 censored: S(1) = 4/5, S(2) = 3/5, S(3) = 2/5, flat after
    mean, median = rq3.kaplan_meier([1, 2, 3, 3, 5], [True, True, False, True, False])
    assert mean == pytest.approx(1 + 0.8 + 0.6 + 0.4 + 0.4) and median == 3
    assert rq3.kaplan_meier([4, 4], [True, True]) == (4.0, 4.0)
    assert all(np.isnan(rq3.kaplan_meier([3], [False])))


def simulate_algorithm1(seed, n=6000, p=100, s=5, workers=8):
    """A trace of the project's RegularizedEvolution on a simulated clock: W workers, exponential
    training times, a child's quality its parent's plus noise (so new maxima are frequent and often
    superseded before their first child)."""
    import heapq

    from evotrace.search.regevo import RegularizedEvolution

    rng = np.random.default_rng(seed)
    re = RegularizedEvolution([5] * 6, p, s, n, np.random.default_rng(seed + 1))
    quality, rows, running, now = {}, [], [], 0.0
    while len(rows) < n:
        while len(running) < workers and re.can_create():
            cand = re.create()
            q = rng.random() if cand.parent_id is None else quality[cand.parent_id] + rng.normal(0, 0.02)
            quality[cand.job_id] = q
            heapq.heappush(running, (now + rng.exponential(1.0), cand.job_id, cand, now))
        now, job, cand, start = heapq.heappop(running)
        seq = re.complete(job, cand.arch_seq, quality[job])
        rows.append(dict(run="sim", job_id=job, stage=cand.stage, parent_id=cand.parent_id,
                         population_version=cand.population_version, insert_seq=seq, quality=quality[job],
                         start_time=start, end_time=now, status="ok"))
    return frame(rows)


def test_lag_estimator_recovers_p_over_s_on_algorithm1_traces():
    params = {"analysis": ANALYSIS, "runs": {"sim": {"population": 100, "sample": 5}}}
    c = simulate_algorithm1(7)
    out = rq3.improvement_lag_summary(c, None, params).set_index("run").loc["sim"]
    assert out["censored"] > 0.3 * out["events"]  # superseded new maxima are common
    assert out["mean_lag"] == pytest.approx(20.0, rel=0.10)
    assert out["naive_mean_lag"] < 0.8 * 20.0  # dropping the censored ones biases the mean low


@pytest.fixture
def tables(prefix_trace, use_trace, lag_trace, tmp_path_factory, via_csv):
    c, params = prefix_trace
    out = {name: fn(c, None, params) for name, fn in rq3.TABLES.items() if "lag" not in name and name != "reuse_probability"}
    out["reuse_probability"] = rq3.reuse_probability(*use_trace)
    out["improvement_lag"] = rq3.improvement_lag(lag_trace[0], None, lag_trace[1])
    return via_csv(out, tmp_path_factory.mktemp("tables")), params


def test_figures_draw_the_tables(tables):
    t, params = tables
    hist = fig3.FIGURES["prefix_histograms"](t, params)
    cells = [d for d in hist.data if not d.showlegend]
    assert len(cells) == 2 * 2  # runs x snapshots; run b (3 candidates) has empty cells
    assert list(cells[0].y) == [1, 1, 2] and list(cells[1].y) == [1, 3]
    assert [d.name for d in hist.data if d.showlegend] == ["tier 1", "tier 2", "tier 3"]

    anim = fig3.FIGURES["prefix_animation"](t, params)
    assert len(anim.frames) == 10  # union of the frames of run a (1..10) and run b (1..3)
    assert len(anim.layout.sliders[0].steps) == 10
    last = anim.frames[-1]
    assert list(last.data[0].y) == [1, 2, 1] and list(last.data[1].y) == [1, 1]  # run b keeps its last window

    assert len(fig3.FIGURES["tiers"](t, params).data) == 2 * 3
    donors = fig3.FIGURES["donor_probability"](t, params)
    assert {d.name for d in donors.data} == {"a", "a base rate"}
    assert [a.text for a in donors.layout.annotations][:3] == ["model as donor", "model as parent", "tensor transferred"]
    birthday = fig3.FIGURES["birthday"](t, params)
    assert [b.name.split(" ")[0] for b in birthday.data] == ["stage-1", "exact", "asymptotic", "asymptotic"]
    assert birthday.layout.xaxis.ticktext[0] == "a<br>k = 2, P(max ≥ k) = 0.427"  # 1 - 12*11*10*9/12^4
    lag = fig3.FIGURES["improvement_lag"](t, params)
    assert sum(len(d.x) for d in lag.data) == 3


def test_every_figure_has_a_caption():
    assert set(fig3.CAPTIONS) == set(fig3.FIGURES)
    for name in fig3.CAPTIONS.values():
        text = (REPORT / name).read_text()
        assert name.startswith("rq3_") and len(text.split(".")) >= 4


def test_export_html_png_and_pdf_from_one_browser(tables, tmp_path):
    t, params = tables
    fig = fig3.FIGURES["prefix_animation"](t, params)
    paths = [tmp_path / "anim.html", tmp_path / "anim.png", tmp_path / "anim.pdf"]
    save(fig, paths, width=500, height=400, scale=1)
    html = paths[0].read_text()
    assert "Plotly.newPlot" in html and "candidates created: " in html
    assert paths[1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths[2].read_bytes()[:5] == b"%PDF-"
    with pytest.raises(ValueError, match="anim.jpeg"):
        save(fig, [tmp_path / "anim.jpeg"])
