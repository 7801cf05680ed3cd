"""Replicate statistics for the RQ5 comparisons: medians with seeded percentile-bootstrap 95 % intervals,
and the difference of medians between two variants with its interval and a plain significance flag.

A few seeds per variant give skewed, tie-heavy samples (times to quality, best qualities), so medians
rather than means, and the percentile bootstrap, which assumes no distribution. The resamples are drawn
as scipy.stats.bootstrap draws them (one integer matrix per sample, in order), so that a given seed gives
the same interval here and there. "Significant" means the interval of the difference excludes 0."""

from __future__ import annotations

import numpy as np
import pandas as pd

RESAMPLES = 10_000
CONFIDENCE = 0.95
SEED = 0


def _sample(values) -> np.ndarray:
    x = np.asarray(values, float)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        raise ValueError("a bootstrap needs at least one value that is not NaN")
    return x


def _resampled_medians(x: np.ndarray, rng: np.random.Generator, resamples: int) -> np.ndarray:
    return np.median(x[rng.integers(0, len(x), (resamples, len(x)))], axis=-1)


def _interval(theta: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(theta, [alpha, 1.0 - alpha])
    return float(low), float(high)


def median_ci(values, resamples: int = RESAMPLES, confidence: float = CONFIDENCE, seed: int = SEED
              ) -> tuple[float, float, float]:
    """(median, low, high): the sample median and its percentile-bootstrap interval (NaNs dropped)."""
    x = _sample(values)
    theta = _resampled_medians(x, np.random.default_rng(seed), resamples)
    return (float(np.median(x)), *_interval(theta, confidence))


def median_difference(baseline, variant, resamples: int = RESAMPLES, confidence: float = CONFIDENCE,
                      seed: int = SEED) -> dict:
    """median(variant) - median(baseline) with the percentile-bootstrap interval of that difference
    (each sample resampled on its own), and whether the interval excludes 0."""
    a, b = _sample(baseline), _sample(variant)
    rng = np.random.default_rng(seed)
    theta_a = _resampled_medians(a, rng, resamples)
    theta = _resampled_medians(b, rng, resamples) - theta_a
    low, high = _interval(theta, confidence)
    return {"difference": float(np.median(b) - np.median(a)), "low": low, "high": high,
            "significant": bool(low > 0 or high < 0)}


def medians(frame: pd.DataFrame, value: str, by: list[str], **options) -> pd.DataFrame:
    """One row per group of `by`: replicates n, median of `value` and its interval."""
    rows = []
    for key, group in frame.groupby(by, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        median, low, high = median_ci(group[value], **options)
        rows.append((*key, int(group[value].notna().sum()), median, low, high))
    return pd.DataFrame(rows, columns=[*by, "n", "median", "low", "high"])


def differences(frame: pd.DataFrame, value: str, variant: str, baseline, by: list[str] | None = None,
                **options) -> pd.DataFrame:
    """Each variant (values of column `variant`) against `baseline`, within each group of `by`: the
    difference of medians of `value`, its interval, and `verdict` "significant" / "not significant"."""
    by = list(by or [])
    rows = []
    groups = frame.groupby(by, sort=True) if by else [((), frame)]
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        base = group.loc[group[variant] == baseline, value]
        if base.notna().sum() == 0:
            raise ValueError(f"no {value} of the baseline {variant}={baseline!r} in {dict(zip(by, key)) or 'the frame'}")
        for name, other in group[group[variant] != baseline].groupby(variant, sort=True):
            d = median_difference(base, other[value], **options)
            rows.append((*key, name, baseline, int(base.notna().sum()), int(other[value].notna().sum()),
                         d["difference"], d["low"], d["high"], d["significant"]))
    out = pd.DataFrame(rows, columns=[*by, variant, "baseline", "n_baseline", "n_variant", "difference", "low",
                                      "high", "significant"])
    out["verdict"] = np.where(out["significant"], "significant", "not significant")
    return out
