"""RQ5 figures (design choices): cache-policy hit-ratio curves against Belady's optimum, drawn from the
rq5 tables, and the one-sentence findings their report captions state (FINDINGS, filled from the tables)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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
                  f"({LABELS.get(best, best)}) {_percent(online[best])} and LRU {_percent(worker.get('lru', np.nan))}")
        if ("node", "lru") in at.index:
            clause += f", and LRU shared by the workers of a node {_percent(at[('node', 'lru')])}"
        clauses.append(clause)
    text = "; ".join(clauses)
    return text[0].upper() + text[1:] + "."


FIGURES = {
    "cache_replay": cache_replay,
}

CAPTIONS = {name: f"rq5_{name}.rst" for name in FIGURES}

FINDINGS = {
    "cache_replay": cache_replay_finding,
}


def finding(name: str, tables_dir, config_json=None) -> str:
    """The caption's one-sentence finding for figure `name`, from the tables in tables_dir (empty until
    they exist: Snakemake may ask before the analysis ran)."""
    from ..analysis.command import load_params, read_tables

    if not Path(tables_dir).is_dir() or not any(Path(tables_dir).glob("*.csv")):
        return ""
    return FINDINGS[name](read_tables(tables_dir), load_params(config_json) if config_json else {"analysis": {}})
