"""Replicate statistics: exact answers on degenerate and two-point samples, and scipy.stats.bootstrap's
percentile intervals for the same seed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import bootstrap

from evotrace.analysis import stats


def test_constant_and_single_samples_have_a_point_interval():
    assert stats.median_ci([3.0, 3.0, 3.0, 3.0, 3.0]) == (3.0, 3.0, 3.0)
    assert stats.median_ci([7.5]) == (7.5, 7.5, 7.5)
    assert stats.median_ci([2.0, np.nan, 2.0]) == (2.0, 2.0, 2.0)


def test_two_point_sample_spans_both_values():
    # resampled medians are 0, 0.5 or 1 with probabilities 1/4, 1/2, 1/4: the 2.5 % and 97.5 % quantiles are 0 and 1
    assert stats.median_ci([0.0, 1.0]) == (0.5, 0.0, 1.0)


def test_same_seed_same_interval():
    x = np.random.default_rng(1).lognormal(size=7)
    assert stats.median_ci(x, seed=4) == stats.median_ci(x, seed=4)


@pytest.mark.parametrize("seed", [0, 11])
def test_median_interval_equals_scipy_percentile_bootstrap(seed):
    x = np.random.default_rng(seed + 100).gamma(2.0, 3.0, size=9)
    res = bootstrap((x,), np.median, n_resamples=stats.RESAMPLES, method="percentile", confidence_level=0.95,
                    rng=np.random.default_rng(seed), vectorized=True)
    median, low, high = stats.median_ci(x, seed=seed)
    assert median == np.median(x)
    assert (low, high) == pytest.approx((res.confidence_interval.low, res.confidence_interval.high), rel=1e-12)


def test_difference_interval_equals_scipy_two_sample_bootstrap():
    rng = np.random.default_rng(7)
    a, b = rng.normal(10, 2, 6), rng.normal(12, 2, 8)

    def diff(x, y, axis=-1):
        return np.median(y, axis=axis) - np.median(x, axis=axis)

    res = bootstrap((a, b), diff, n_resamples=stats.RESAMPLES, method="percentile", rng=np.random.default_rng(3),
                    vectorized=True, paired=False)
    d = stats.median_difference(a, b, seed=3)
    assert d["difference"] == np.median(b) - np.median(a)
    assert (d["low"], d["high"]) == pytest.approx((res.confidence_interval.low, res.confidence_interval.high), rel=1e-12)


def test_disjoint_samples_differ_significantly_and_equal_ones_do_not():
    d = stats.median_difference([1.0, 2.0, 3.0, 4.0, 5.0], [21.0, 22.0, 23.0, 24.0, 25.0])
    assert d["difference"] == 20.0 and d["significant"]
    assert 17.0 <= d["low"] <= d["high"] <= 23.0  # resampled medians stay within each sample's range
    same = stats.median_difference([1.0, 2.0, 3.0, 4.0, 5.0], [1.0, 2.0, 3.0, 4.0, 5.0])
    assert same["difference"] == 0.0 and not same["significant"] and same["low"] < 0 < same["high"]
    fixed = stats.median_difference([2.0, 2.0], [5.0, 5.0, 5.0])
    assert (fixed["difference"], fixed["low"], fixed["high"], fixed["significant"]) == (3.0, 3.0, 3.0, True)


def test_tables_per_group_and_variant():
    frame = pd.DataFrame({
        "rq": ["x"] * 10,
        "policy": ["none"] * 5 + ["lru"] * 5,
        "seconds": [10.0, 11.0, 12.0, 13.0, 14.0, 10.0, 11.0, 12.0, 13.0, 14.0],
    })
    m = stats.medians(frame, "seconds", ["policy"])
    assert m["policy"].tolist() == ["lru", "none"] and m["n"].tolist() == [5, 5]
    assert m["median"].tolist() == [12.0, 12.0] and (m["low"] <= 12.0).all() and (m["high"] >= 12.0).all()
    d = stats.differences(frame, "seconds", "policy", "none", by=["rq"])
    assert d[["rq", "policy", "baseline", "n_baseline", "n_variant", "difference"]].values.tolist() == [
        ["x", "lru", "none", 5, 5, 0.0]]
    assert d["verdict"].tolist() == ["not significant"]
    with pytest.raises(ValueError, match="baseline policy='popularity'"):
        stats.differences(frame, "seconds", "policy", "popularity")
    with pytest.raises(ValueError, match="at least one value"):
        stats.median_ci([np.nan])
