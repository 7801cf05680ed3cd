"""RQ5 figures (design choices): cache-policy hit-ratio curves against Belady's optimum, drawn from the
rq5 tables, and the one-sentence findings their report captions state (FINDINGS, filled from the tables)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..analysis.replay import POLICIES
from . import layout
from .layout import COLORS, TEMPLATE

LABELS = {"lru": "LRU", "lfu": "LFU", "popularity": "popularity (>= k of last p)", "tier": "tier-aware",
          "opt": "Belady's optimum (offline)"}
SCOPE_LABELS = {"worker": "one cache per worker", "node": "one cache per node"}
FINDING_FRACTION = 0.1  # the capacity the caption quotes: the swept one closest to 10 % of the bytes read


def cache_replay(tables, params) -> go.Figure:
    """Hit ratio against cache capacity, one line per policy, the optimum drawn last (on top); one row
    per run, a worker-local and a node-level column."""
    t = tables["cache_replay"]
    runs = layout.listed_runs(t, params) or ["(no tensor reads)"]
    scopes = [s for s in SCOPE_LABELS if s in set(t["scope"])] or ["worker"]
    titles = [f"{run}: {SCOPE_LABELS[s]}" for run in runs for s in scopes]
    fig, cells, rows = layout.grid(titles, cols=len(scopes), row_px=260, gap_px=80)
    low = layout.bottom_cells(cells)
    order = [p for p in POLICIES if p != "opt"] + ["opt"]
    for i, ((r, c), (run, scope)) in enumerate(zip(cells, [(run, s) for run in runs for s in scopes])):
        sub = t[(t["run"] == run) & (t["scope"] == scope)]
        for j, policy in enumerate(order):
            line = sub[sub["policy"] == policy].sort_values("capacity_fraction")
            if line.empty:
                continue
            optimum = policy == "opt"
            fig.add_trace(
                go.Scatter(x=line["capacity_fraction"], y=line["hit_ratio"], mode="lines+markers",
                           name=LABELS.get(policy, policy), legendgroup=policy, showlegend=i == 0,
                           line=dict(color="black" if optimum else COLORS[j % len(COLORS)], width=3 if optimum else 2,
                                     dash="dash" if optimum else "solid"),
                           customdata=line[["hits", "reads", "bytes_fetched", "capacity_bytes"]],
                           hovertemplate="capacity %{x:.0%}: %{customdata[0]} of %{customdata[1]} reads hit, "
                           "%{customdata[2]:,} bytes fetched (cache %{customdata[3]:,} bytes)<extra></extra>"),
                row=r, col=c,
            )
        fig.update_xaxes(type="log", tickformat=".0%", row=r, col=c,
                         title_text="cache capacity (share of the bytes its workers read)" if (r, c) in low else None)
        fig.update_yaxes(range=[0, 1], tickformat=".0%", row=r, col=c)
    layout.shared_ytitle(fig, "hit ratio (share of tensor reads served by the cache)")
    fig.update_layout(title="Cache policies replayed over the traced tensor reads, against Belady's optimum",
                      template=TEMPLATE, legend_title_text="policy")
    layout.top_legend(fig)
    return fig


def _percent(x: float) -> str:
    return f"{100 * x:.0f} %" if x >= 0.1 else f"{100 * x:.1f} %"


def cache_replay_finding(tables, params) -> str:
    """One sentence per run: at the capacity closest to 10 %, the optimum's hit ratio, the best online
    policy's and LRU's per worker, and LRU's with a node cache."""
    t = tables.get("cache_replay")
    if t is None or t.empty:
        return "No tensor reads were traced (no run transfers weights), so no cache was replayed."
    clauses = []
    for run in layout.listed_runs(t, params):
        sub = t[t["run"] == run]
        fractions = np.sort(sub["capacity_fraction"].unique())
        fraction = fractions[np.argmin(np.abs(np.log(fractions / FINDING_FRACTION)))]
        at = sub[sub["capacity_fraction"] == fraction].set_index(["scope", "policy"])["hit_ratio"]
        worker = at.xs("worker", level="scope")
        online = worker.drop("opt", errors="ignore")
        best = online.idxmax()
        clause = (f"in run {run}, with caches of {_percent(fraction)} of the bytes a worker reads, Belady's optimum "
                  f"serves {_percent(worker.get('opt', np.nan))} of the reads, the best online policy "
                  f"({LABELS.get(best, best)}) {_percent(online[best])}")
        if best != "lru":
            clause += f" and LRU {_percent(worker.get('lru', np.nan))}"
        if ("node", "lru") in at.index:
            clause += f", and LRU shared by the workers of a node {_percent(at[('node', 'lru')])}"
        clauses.append(clause)
    text = "; ".join(clauses)
    return text[0].upper() + text[1:] + "."


METRIC_LABELS = {
    "bytes_read": "bytes read from the repository", "transfer_seconds": "transfer seconds (sum)",
    "hit_rate": "cache hit rate (traced)", "predicted_hit_rate": "hit rate the replay predicts",
    "best_quality": "best quality", "idle_fraction": "worker idle fraction",
    "mean_idle_seconds": "idle seconds per dispatch", "bound_wait_seconds": "RQ2 bound: wait per dispatch (s)",
    "time_to_quality": "seconds to quality", "mean_prefix_len": "mean transferred prefix",
    "mean_train_seconds": "training seconds per candidate", "bytes_written": "bytes written",
    "skipped_best_donor": "share whose best donor was skipped", "prefix_lost": "prefix positions lost",
}
KIND_TITLES = {"cache": "Cache policies in situ", "quanta": "Scheduling quanta", "mutation": "Mutation position bias",
               "skip_store": "Skip-store", "transfer": "Transfer learning on and off"}


def _metric_name(metric: str, level) -> str:
    label = METRIC_LABELS.get(metric, metric)
    return f"{label} {level:g}" if metric == "time_to_quality" and pd.notna(level) else label


def _design(kind: str):
    def draw(tables, params) -> go.Figure:
        """Median of each metric per variant with its bootstrap 95 % interval; one row per comparison
        group, one column per metric; hollow markers: not significantly different from the baseline."""
        t = tables.get("design_comparisons")
        t = t[t["kind"] == kind] if t is not None and len(t) else pd.DataFrame(columns=["label", "metric", "level"])
        if t.empty:
            fig = go.Figure()
            fig.add_annotation(text=f"no {kind} comparison in this study (analysis.design.comparisons.{kind})",
                               showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
            fig.update_layout(title=KIND_TITLES[kind], template=TEMPLATE, height=300)
            return fig
        panels = list(dict.fromkeys(zip(t["label"], t["metric"], t["level"].fillna(-1.0))))
        labels = list(dict.fromkeys(t["label"]))
        metrics = list(dict.fromkeys((m, lv) for _, m, lv in panels))
        titles = [f"{_metric_name(m, None if lv == -1.0 else lv)}<br><sup>{label}</sup>" for label in labels
                  for m, lv in metrics]
        fig, cells, _ = layout.grid(titles, cols=3, row_px=240, gap_px=110, hgap=0.08)
        fig.update_annotations(font_size=13)
        for (r, c), (label, (metric, level)) in zip(cells, [(lb, m) for lb in labels for m in metrics]):
            sub = t[(t["label"] == label) & (t["metric"] == metric) & (t["level"].fillna(-1.0) == level)]
            if sub.empty:
                continue
            solid = sub["verdict"].isin(["significant", "baseline"])
            fig.add_trace(go.Scatter(
                x=sub["variant"], y=sub["median"], mode="markers", showlegend=False,
                marker=dict(size=10, color=COLORS[0], symbol=np.where(solid, "circle", "circle-open")),
                error_y=dict(type="data", symmetric=False, array=sub["high"] - sub["median"],
                             arrayminus=sub["median"] - sub["low"]),
                customdata=sub[["n", "replicates", "verdict"]],
                hovertemplate="%{x}: median %{y:.4g} (%{customdata[0]} of %{customdata[1]} runs), "
                              "%{customdata[2]}<extra></extra>"), row=r, col=c)
        fig.update_layout(title=f"{KIND_TITLES[kind]}: medians over seeds with bootstrap 95 % intervals "
                                "(hollow: not significantly different from the baseline)", template=TEMPLATE)
        return fig

    draw.__name__ = f"design_{kind}"
    return draw


def _fmt(x: float) -> str:
    if not np.isfinite(x):
        return "n/a"
    return f"{x:.3g}" if abs(x) < 1e4 else f"{x:.3e}"


def design_finding(kind: str):
    def finding(tables, params) -> str:
        """One sentence: per group, the headline metric of each variant against the baseline, the
        difference of medians with its interval and whether it is significant."""
        from ..analysis.design import HEADLINE

        t = tables.get("design_comparisons")
        t = t[t["kind"] == kind] if t is not None and len(t) else None
        if t is None or t.empty:
            return f"This study runs no {kind} comparison (analysis.design.comparisons.{kind})."
        metric = HEADLINE[kind]
        clauses = []
        for label, g in t.groupby("label", sort=False):
            m = g[g["metric"] == metric]
            if metric == "time_to_quality" and len(m):
                m = m[m["level"] == m["level"].min()]
            base = m[m["verdict"] == "baseline"]
            if base.empty:
                continue
            b = base.iloc[0]
            parts = []
            for _, v in m[m["verdict"] != "baseline"].iterrows():
                if pd.isna(v["difference"]):
                    parts.append(f"{v['variant']} median {_fmt(v['median'])} (n={int(v['n'])}, no difference computable)")
                    continue
                parts.append(f"{v['variant']} {_fmt(v['median'])} [95 % CI {_fmt(v['low'])}, {_fmt(v['high'])}], "
                             f"difference {_fmt(v['difference'])} [{_fmt(v['difference_low'])}, "
                             f"{_fmt(v['difference_high'])}], {v['verdict']}")
            what = _metric_name(metric, b["level"])
            clauses.append(f"{label}: median {what} of {b['variant']} {_fmt(b['median'])} [95 % CI {_fmt(b['low'])}, "
                           f"{_fmt(b['high'])}, n={int(b['n'])}] against " + ("; ".join(parts) or "no other variant"))
        if kind == "quanta":
            clauses += _determinism(tables.get("design_determinism"))
        text = "; ".join(clauses)
        return (text[0].upper() + text[1:] + ".") if clauses else f"No {kind} comparison had a baseline run."

    return finding


def _determinism(t) -> list[str]:
    """Clauses on pairs of runs with the same knobs and seed: where their architectures first differ."""
    if t is None or t.empty:
        return []
    out = []
    for (quanta, workers), g in t.groupby(["quanta", "workers"], sort=True):
        same = int(g["first_divergence"].isna().sum())
        first = g["first_divergence"].dropna()
        text = f"{len(g)} pair(s) of same-seed runs at q={int(quanta)}, W={int(workers)}: {same} identical"
        if len(first):
            text += (f", the others diverging first at job {int(first.min())} (identical share "
                     f"{g['identical_fraction'].median():.2f} median)")
        out.append(text)
    return out


FIGURES = {
    "cache_replay": cache_replay,
    **{f"design_{kind}": _design(kind) for kind in ("cache", "quanta", "mutation", "skip_store", "transfer")},
}

CAPTIONS = {name: f"rq5_{name}.rst" for name in FIGURES}

FINDINGS = {
    "cache_replay": cache_replay_finding,
    **{f"design_{kind}": design_finding(kind) for kind in ("cache", "quanta", "mutation", "skip_store", "transfer")},
}


def finding(name: str, tables_dir, config_json=None) -> str:
    """The caption's one-sentence finding for figure `name`, from the tables in tables_dir (empty until
    they exist: Snakemake may ask before the analysis ran)."""
    from ..analysis.command import load_params, read_tables

    if not Path(tables_dir).is_dir() or not any(Path(tables_dir).glob("*.csv")):
        return ""
    return FINDINGS[name](read_tables(tables_dir), load_params(config_json) if config_json else {"analysis": {}})
