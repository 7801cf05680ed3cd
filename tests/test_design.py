"""RQ5 design experiments: per-run metrics on hand-made traces, comparisons over seeds with intervals,
determinism of same-seed runs, per-run cache and skip-store settings, and the figures' findings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evotrace.analysis import design, rq5
from evotrace.analysis.replay import priorities, replay
from evotrace.config import replicate_name, variant_of

COLUMNS = ["run", "job_id", "worker", "submit_time", "start_time", "end_time", "quality", "status", "prefix_len",
           "train_seconds", "bytes_read", "bytes_written", "transfer_seconds", "stored", "insert_seq",
           "population_version", "arch_seq", "donor_id"]


def candidates(run, rows):
    """rows: (job_id, worker, start, end, quality, arch, stored, insert_seq, population_version)."""
    out = []
    for job, worker, start, end, quality, arch, stored, seq, version in rows:
        out.append((run, job, worker, start, start, end, quality, "ok" if quality is not None else "failed", None, end - start,
                    0, 100 if stored else 0, 0.0, stored, seq, version, np.asarray(arch, np.int16), None))
    return pd.DataFrame(out, columns=COLUMNS)


def spec(**over):
    base = {"population": 3, "sample": 2, "workers": 2, "seed": 1, "quanta": 1, "transfer": True,
            "mutation": {"positions": "uniform"}, "evaluation": {"kind": "train"},
            "transfer_options": {"cache": {"policy": "lru", "capacity_mb": 1}, "skip_store": {"enabled": False}}}
    return {**base, **over}


def test_variant_of_inverts_replicate_names():
    assert variant_of(replicate_name("q4", 17)) == "q4"
    assert variant_of("nb201") == "nb201" and variant_of("a-seed1x") == "a-seed1x"


def test_time_to_quality_and_idle_fraction_on_a_hand_made_run():
    c = candidates("r", [
        (0, 1, 1.0, 3.0, 0.2, [0, 0], True, 0, 0),
        (1, 2, 1.0, 2.0, None, [1, 0], False, None, 0),
        (2, 2, 3.0, 5.0, 0.7, [0, 1], True, 1, 1),
        (3, 1, 4.0, 5.0, 0.9, [0, 0], True, 2, 2),
    ])
    assert design.time_to_quality(c, 0.5) == 5.0 - 1.0
    assert design.time_to_quality(c, 0.1) == 3.0 - 1.0
    assert np.isnan(design.time_to_quality(c, 0.95))
    # 2 workers over 4 s (1..5): busy 2 + 1 + 2 + 1 = 6 of 8 worker-seconds
    assert design.idle_fraction(c, 2) == pytest.approx(1 - 6 / 8)


def test_prefix_available_sees_the_best_donor_that_skip_store_dropped():
    c = candidates("r", [
        (0, 1, 0, 1, 0.5, [1, 2, 3], False, 0, 0),  # not stored
        (1, 1, 1, 2, 0.6, [1, 0, 0], True, 1, 1),
        (2, 1, 2, 3, 0.7, [1, 2, 0], True, 2, 2),  # created after 0 and 1 were inserted: best 0 (2), stored 1 (1)
        (3, 1, 3, 4, 0.8, [1, 2, 3], True, 3, 3),  # best 0 (3 positions, skipped), stored 2 (2 positions)
        (4, 1, 4, 5, 0.1, [2, 2, 3], True, 4, 1),  # created when only job 0 was in: nothing stored to share
    ])
    every, kept = design.prefix_available(c)
    assert every.tolist() == [0, 1, 2, 3, 0] and kept.tolist() == [0, 0, 1, 2, 0]
    metrics = dict((m, v) for m, _, v in design.run_metrics(c, pd.DataFrame({"cache_hit": []}), spec(), [], 0.0))
    assert metrics["skipped_best_donor"] == pytest.approx(3 / 5)
    assert metrics["prefix_lost"] == pytest.approx(3 / 5)
    assert metrics["bytes_written"] == 400


def reads_of(run, rows):
    """rows: (job_id, worker, start, tensor, cache_hit); every tensor is 2**19 bytes (half a MiB)."""
    return pd.DataFrame([(run, j, w, t, x, 0, 0, 2**19, h) for j, w, t, x, h in rows],
                        columns=["run", "job_id", "worker", "start_time", "tensor_id", "owner_id", "position", "nbytes",
                                 "cache_hit"])


def test_predicted_hit_rate_replays_the_runs_own_policy_and_capacity():
    c = candidates("r", [(j, 1, j, j + 1, 0.5, [0, 0], True, j, j) for j in range(6)])
    tensors = ["A", "B", "C", "A", "B", "A"]
    r = reads_of("r", [(j, 1, float(j), t, False) for j, t in enumerate(tensors)])
    # 1 MiB holds two of the half-MiB tensors: LRU hits only the last A (A B C A B A: C evicts A, A evicts B...)
    keys = pd.factorize(pd.Series(tensors))[0]
    prio, admit = priorities("lru", keys)
    expected = replay(keys, np.full(6, 2**19), prio, 2**20, admit).mean()
    assert design.predicted_hit_rate(c, r, spec()) == pytest.approx(expected) == pytest.approx(1 / 6)
    assert design.predicted_hit_rate(c, r, spec(transfer_options={"cache": {"policy": "none"}})) == 0.0
    assert design.predicted_hit_rate(c, r, spec(transfer_options={"cache": {"policy": "lru", "capacity_mb": 2}})) \
        == pytest.approx(3 / 6)


def design_study(effects: dict, seeds=range(1, 6)):
    """Runs <variant>-seed<k> whose best quality is effects[variant] + noise; everything else equal."""
    rng = np.random.default_rng(0)
    frames, runs = [], {}
    for variant, (quality, quanta) in effects.items():
        for seed in seeds:
            run = replicate_name(variant, seed)
            best = quality + rng.normal(0, 0.01)
            rows = [(j, 1 + j % 2, float(j), float(j + 1), best if j == 4 else best - 0.3, [j % 3, seed], True, j, j)
                    for j in range(5)]
            frames.append(candidates(run, rows))
            runs[run] = spec(seed=seed, quanta=quanta)
    return pd.concat(frames, ignore_index=True), runs


def test_comparisons_give_medians_intervals_and_plain_verdicts():
    cands, runs = design_study({"q1": (0.5, 1), "q2": (0.5, 2), "q4": (0.8, 2)})
    params = {"runs": runs, "analysis": {"design": {"quality_levels": [0.45], "comparisons": {
        "quanta": [{"label": "real W=2", "baseline": "q1", "variants": ["q2", "q4", "q8"]}]}}}}
    t = rq5.TABLES["design_comparisons"](cands, pd.DataFrame(columns=["run", "cache_hit"]), params)
    best = t[t["metric"] == "best_quality"].set_index("variant")
    assert list(best.index) == ["q1", "q2", "q4"]  # q8 has no run: left out
    assert best.loc["q1", "verdict"] == "baseline" and np.isnan(best.loc["q1", "difference"])
    assert best.loc["q2", "verdict"] == "not significant"
    assert best.loc["q4", "verdict"] == "significant" and best.loc["q4", "difference_low"] > 0.2
    assert (best["n"] == 5).all() and (best["replicates"] == 5).all()
    assert (best["low"] <= best["median"]).all() and (best["median"] <= best["high"]).all()
    reach = t[t["metric"] == "time_to_quality"].set_index("variant")
    # q1 reaches 0.45 only with its best (job 4, ends at 5 s); in q4 the first job (0.5) already does, at 1 s
    assert reach["level"].eq(0.45).all() and reach.loc["q1", "median"] == 5.0 and reach.loc["q4", "median"] == 1.0
    assert reach.loc["q4", "verdict"] == "significant" and reach.loc["q4", "difference"] == -4.0
    assert set(t["metric"]) <= set(design.KINDS["quanta"])
    few = rq5.TABLES["design_comparisons"](cands[~cands["run"].str.endswith(("seed4", "seed5"))],
                                           pd.DataFrame(columns=["run", "cache_hit"]), params)
    assert few.query("metric == 'best_quality' and variant == 'q4'")["verdict"].iloc[0] == \
        "too few seeds to judge (n < 5)"  # 3 seeds: the interval would call it significant


def test_unknown_comparison_kind_is_named():
    with pytest.raises(KeyError, match="unknown kind 'colour'"):
        design.comparison_groups({"analysis": {"design": {"comparisons": {"colour": []}}}})


def test_determinism_pairs_runs_with_the_same_knobs_and_seed():
    a = candidates("q2-seed1", [(j, 1, j, j + 1, 0.5, [j, 0], True, j, j) for j in range(4)])
    b = candidates("q2-again-seed1", [(j, 1, j, j + 1, 0.5, [j, 0] if j < 2 else [j, 1], True, j, j) for j in range(4)])
    c = candidates("q2-seed2", [(j, 1, j, j + 1, 0.5, [j, 0], True, j, j) for j in range(4)])
    runs = {"q2-seed1": spec(quanta=2), "q2-again-seed1": spec(quanta=2), "q2-seed2": spec(quanta=2, seed=2)}
    t = design.design_determinism(pd.concat([a, b, c], ignore_index=True), None, {"runs": runs})
    assert len(t) == 1
    row = t.iloc[0]
    assert {row["run"], row["other"]} == {"q2-seed1", "q2-again-seed1"}
    assert row["first_divergence"] == 2 and row["identical_fraction"] == 0.5


def test_a_run_overrides_the_studys_cache_and_skip_store():
    from evotrace.runspec import build_spec

    config = {"study": "s", "datasets": {"d": {"source": "sklearn-digits"}},
              "search": {"candidates": 10, "population": 4, "sample": 2, "workers": 2},
              "transfer": {"cache": {"policy": "popularity", "capacity_mb": 8}},
              "runs": {"a": {"space": "nb201", "dataset": "d", "epochs": 1, "seed": 1, "cache": {"policy": "lru"},
                             "skip_store": {"enabled": True, "threshold": 0.05}},
                       "b": {"space": "nb201", "dataset": "d", "epochs": 1, "seed": 1}},
              "training": {}, "analysis": {"snapshots": [5], "trie": {"runs": ["a"]}}}
    options = {"input_shape": [1, 8, 8], "num_classes": 10}
    a, b = (build_spec(config, run, "", options)["transfer"] for run in ("a", "b"))
    assert a["cache"] == {**b["cache"], "policy": "lru"} and b["cache"]["capacity_mb"] == 8
    assert a["skip_store"] == {"enabled": True, "threshold": 0.05}
    assert b["cache"]["policy"] == "popularity" and b["skip_store"] == {"enabled": False, "threshold": 0.01}


def test_figures_and_findings_quote_the_comparison_table(tmp_path, via_csv):
    from evotrace.figures import rq5 as fig5

    cands, runs = design_study({"none": (0.5, 1), "lru": (0.8, 1)})
    params = {"runs": runs, "analysis": {"design": {"comparisons": {"cache": [{"baseline": "none", "variants": ["lru"]}]}}}}
    tables = via_csv({name: rq5.TABLES[name](cands, pd.DataFrame(columns=["run", "cache_hit"]), params)
                      for name in ("design_comparisons", "design_determinism")}, tmp_path)
    fig = fig5.FIGURES["design_cache"](tables, params)
    assert len(fig.data) >= 3 and list(fig.data[0].x) == ["none", "lru"]
    text = fig5.FINDINGS["design_cache"](tables, params)
    assert text.startswith("Cache 1: median bytes read from the repository of none 0")
    assert "not significant" not in text or "significant" in text
    best = tables["design_comparisons"].query("metric == 'bytes_read' and variant == 'lru'").iloc[0]
    assert f"[{fig5._fmt(best['difference_low'])}, {fig5._fmt(best['difference_high'])}]" in text
    assert fig5.FINDINGS["design_quanta"](tables, params).startswith("This study runs no quanta comparison")
    empty = fig5.FIGURES["design_quanta"](tables, params)
    assert "no quanta comparison" in empty.layout.annotations[0].text
