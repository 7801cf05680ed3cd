"""RQ3 figures (Section V-D): Fig. 4, its animation, tiers, donor probability, birthday bound and the
improvement lag, drawn from the rq3 tables."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from . import layout
from .layout import COLORS, TEMPLATE

TIER_COLORS = {1: "#d62728", 2: "#ff7f0e", 3: "#1f77b4"}
BAR_WIDTH = 0.8  # in prefix ids: plotly widens the bars of a sparse histogram to the gap between ids
MAX_FRAMES = 200  # frames of the animation, whatever the number of runs


def _id_ranges(tables, runs) -> dict[str, list[float]]:
    """x-range of a row: every prefix id of the run, so that ids line up across its columns."""
    ids = tables["prefix_ids"].groupby("run")["prefix_id"].max()
    return {run: [-0.5, float(ids.get(run, 0)) + 0.5] for run in runs}


def _bar(sub):
    """Bars colored by popularity tier, so the three tiers read off any histogram."""
    return go.Bar(
        x=sub["prefix_id"], y=sub["count"], width=[BAR_WIDTH] * len(sub), showlegend=False,
        marker_color=list(sub["tier"].map(TIER_COLORS)), marker_line_width=0,
        customdata=sub[["prefix", "tier"]],
        hovertemplate="id %{x} (%{customdata[0]}): %{y}, tier %{customdata[1]}<extra></extra>",
    )


def _tier_legend(fig):
    for tier, color in TIER_COLORS.items():
        fig.add_trace(go.Bar(x=[None], y=[None], name=f"tier {tier}", marker_color=color, showlegend=True))


def _tier_note(params) -> str:
    """What the tiers mean, from analysis.tiers, for a figure's subtitle."""
    t = params.get("analysis", {}).get("tiers")
    if not t:
        return ""
    return (f"<br><sup>tier 1: at least {100 * t['tier1_fraction']:g}% of the window; tier 3: at most "
            f"{t['tier3_max']} occurrences; tier 2: between</sup>")


def _window_words(params) -> tuple[str, str]:
    """(what the window holds, what `seen` counts) for analysis.prefix_window."""
    if params.get("analysis", {}).get("prefix_window", "population") == "created":
        return "the last p candidates created", "created"
    return "the population (last p inserted)", "inserted"


def prefix_histograms(tables, params) -> go.Figure:
    """Fig. 4: prefix histograms of the last p candidates; rows = runs, columns = snapshots."""
    snaps = tables["prefix_snapshots"]
    runs = layout.listed_runs(tables["prefix_ids"], params) or ["(no candidates)"]
    seen = sorted(snaps["seen"].unique()) or [0]
    window, counted = _window_words(params)
    titles = [f"after {n} {counted}" for n in seen] + [""] * (len(seen) * (len(runs) - 1))
    fig, _, rows = layout.grid(titles, cols=len(seen), row_px=160, gap_px=45, hgap=0.05, top=150)
    ranges = _id_ranges(tables, runs)
    for r, run in enumerate(runs, start=1):
        for col, n in enumerate(seen, start=1):
            sub = snaps[(snaps["run"] == run) & (snaps["seen"] == n)]
            fig.add_trace(_bar(sub), row=r, col=col)
            fig.update_xaxes(range=ranges[run], row=r, col=col)
            fig.update_yaxes(rangemode="tozero", dtick=1 if len(sub) and sub["count"].max() <= 5 else None,
                             row=r, col=col)
        layout.row_label(fig, r, run, col=len(seen))
    for col in range(1, len(seen) + 1):
        fig.update_xaxes(title_text="prefix id", row=rows, col=col)
    layout.shared_ytitle(fig, "occurrences in the window", shift_px=-45)
    _tier_legend(fig)
    fig.update_layout(title=f"Prefix popularity in {window}" + _tier_note(params),
                      bargap=0.05, template=TEMPLATE, margin=dict(r=60))
    layout.top_legend(fig, top_px=150)
    return fig


def _frame_steps(steps: np.ndarray) -> np.ndarray:
    """At most MAX_FRAMES of the runs' frame ends, evenly spread, always the first and the last."""
    if len(steps) <= MAX_FRAMES:
        return steps
    return steps[np.unique(np.linspace(0, len(steps) - 1, MAX_FRAMES).round().astype(int))]


def prefix_animation(tables, params) -> go.Figure:
    """Animated Fig. 4 over the whole search: one bar trace per run (row), one frame every ~p/10
    candidates (at most MAX_FRAMES); a run that ended earlier keeps showing its last window."""
    frames_t = tables["prefix_frames"]
    runs = layout.listed_runs(frames_t, params) or ["(no candidates)"]
    bottom = 190  # x-axis title, then the play buttons and the slider
    total = layout.height(len(runs), 150, 45, top=layout.TOP, bottom=bottom)
    fig = make_subplots(rows=len(runs), cols=1,
                        vertical_spacing=layout.spacing(len(runs), 45, total, top=layout.TOP, bottom=bottom))
    ranges = _id_ranges(tables, runs)
    steps = _frame_steps(np.sort(frames_t["seen"].unique()))
    per_run = {run: frames_t[frames_t["run"] == run] for run in runs}
    run_steps = {run: np.sort(t["seen"].unique()) for run, t in per_run.items()}

    def bars(n):
        out = []
        for run in runs:
            own = run_steps[run]
            pick = own[min(np.searchsorted(own, n, side="right"), len(own)) - 1] if len(own) else None
            sub = per_run[run][per_run[run]["seen"] == pick] if pick is not None else per_run[run]
            out.append(_bar(sub))
        return out

    first = steps[0] if len(steps) else 0
    for row, trace in enumerate(bars(first), start=1):
        fig.add_trace(trace, row=row, col=1)
    for row, run in enumerate(runs, start=1):
        ymax = float(per_run[run]["count"].max()) if len(per_run[run]) else 1.0
        fig.update_xaxes(range=ranges[run], row=row, col=1)
        fig.update_yaxes(range=[0, ymax * 1.05], dtick=1 if ymax <= 5 else None, row=row, col=1)
        layout.row_label(fig, row, run)
    fig.update_xaxes(title_text="prefix id", row=len(runs), col=1)
    layout.shared_ytitle(fig, "occurrences in the window", shift_px=-45)
    plot_px = total - layout.TOP - bottom
    controls_y = -70 / plot_px  # below the x-axis title, in the plotting area's paper coordinates
    fig.frames = [go.Frame(name=str(n), data=bars(n), traces=list(range(len(runs)))) for n in steps]
    play = dict(frame=dict(duration=150, redraw=True), fromcurrent=True, transition=dict(duration=0))
    fig.update_layout(
        title=f"Prefix popularity in {_window_words(params)[0]}, through the search",
        height=total,
        margin=dict(t=layout.TOP, b=bottom, l=layout.LEFT, r=60),
        template=TEMPLATE,
        bargap=0.05,
        showlegend=False,
        updatemenus=[dict(type="buttons", x=0, y=controls_y, xanchor="left", yanchor="top", direction="left",
                          pad=dict(t=0, r=10), buttons=[
            dict(label="Play", method="animate", args=[None, play]),
            dict(label="Pause", method="animate", args=[[None], dict(mode="immediate", frame=dict(duration=0, redraw=False))]),
        ])],
        sliders=[dict(active=0, x=0.14, len=0.86, y=controls_y, yanchor="top", pad=dict(t=0),
                      currentvalue=dict(prefix=f"candidates {_window_words(params)[1]}: "), steps=[
            dict(label=str(n), method="animate",
                 args=[[str(n)], dict(mode="immediate", frame=dict(duration=0, redraw=True), transition=dict(duration=0))])
            for n in steps
        ])],
    )
    return fig


def tiers(tables, params) -> go.Figure:
    """Share of each window's candidates carried by tier-1, tier-2 and tier-3 prefixes; rows = runs."""
    t = tables["tiers"]
    runs = layout.listed_runs(t, params) or ["(no candidates)"]
    top = 150
    total = layout.height(len(runs), 130, 35, top=top)
    fig = make_subplots(rows=len(runs), cols=1, shared_xaxes=True,
                        vertical_spacing=layout.spacing(len(runs), 35, total, top=top))
    for row, run in enumerate(runs, start=1):
        sub = t[t["run"] == run]
        for tier, line in sub.groupby("tier", sort=True):
            fig.add_trace(
                go.Scatter(x=line["seen"], y=line["share"], mode="lines", stackgroup=f"run{row}", name=f"tier {tier}",
                           legendgroup=f"tier{tier}", showlegend=row == 1, line_color=TIER_COLORS[int(tier)],
                           line_width=1, customdata=line["prefixes"],
                           hovertemplate="%{x} seen: %{y:.0%} of the window in %{customdata} prefixes<extra></extra>"),
                row=row, col=1,
            )
        fig.update_yaxes(range=[0, 1], tickvals=[0, 0.5, 1], tickformat=".0%", row=row, col=1)
        layout.row_label(fig, row, run)
    window, counted = _window_words(params)
    fig.update_xaxes(title_text=f"candidates {counted}", row=len(runs), col=1)
    layout.shared_ytitle(fig, "share of the window", shift_px=-55)
    fig.update_layout(title=f"Popularity tiers of the prefixes in {window}" + _tier_note(params),
                      height=total, template=TEMPLATE, margin=dict(b=layout.BOTTOM, l=layout.LEFT, r=60))
    layout.top_legend(fig, top_px=top)
    return fig


ROLE_TITLES = {"donor": "model as donor", "parent": "model as parent", "tensor": "tensor transferred"}


def donor_probability(tables, params) -> go.Figure:
    """P(used in the next window | more than k uses in the last window) against the base rate, per role."""
    t = tables["reuse_probability"]
    runs = layout.listed_runs(t, params)
    roles = list(dict.fromkeys(t["role"])) or ["donor", "parent"]
    window = int(t["window"].iloc[0]) if len(t) else 100
    fig = make_subplots(rows=1, cols=len(roles), subplot_titles=[ROLE_TITLES.get(r, r) for r in roles],
                        shared_yaxes=True, horizontal_spacing=0.05)
    for col, role in enumerate(roles, start=1):
        for i, run in enumerate(runs):
            sub = t[(t["run"] == run) & (t["role"] == role)]
            color = COLORS[i % len(COLORS)]
            fig.add_trace(go.Scatter(x=sub["k"], y=sub["probability"], mode="lines+markers", name=run, legendgroup=run,
                                     showlegend=col == 1, line_color=color, customdata=sub[["hits", "models"]],
                                     hovertemplate="more than %{x}: %{customdata[0]}/%{customdata[1]}<extra>" + run + "</extra>"),
                          row=1, col=col)
            if len(sub) and np.isfinite(sub["base_rate"].iloc[0]):
                fig.add_trace(go.Scatter(x=[sub["k"].min(), sub["k"].max()], y=[sub["base_rate"].iloc[0]] * 2, mode="lines",
                                         line=dict(color=color, dash="dot", width=1.5), name=f"{run} base rate",
                                         legendgroup=run, showlegend=False, hoverinfo="skip"), row=1, col=col)
        marked = t[t["threshold"]]["k"]
        if len(marked):
            fig.add_vline(x=int(marked.iloc[0]), line_dash="dash", line_color="grey", row=1, col=col,
                          annotation_text=f"more than {int(marked.iloc[0])}", annotation_position="top right",
                          annotation_font_size=11)
        fig.update_xaxes(title_text=f"k: more than k uses in the last {window} candidates", dtick=1, row=1, col=col)
    fig.update_yaxes(title_text=f"P(used in the next {window})", range=[0, 1.02], row=1, col=1)
    fig.update_layout(title="Does popularity predict reuse? Sliding windows of the last and next "
                      f"{window} candidates<br><sup>dotted: base rate among those that could be used "
                      "(parents: population members; donors: stored models; tensors: read before)</sup>",
                      template=TEMPLATE, height=560, legend_title_text="run")
    return fig


def birthday(tables, params) -> go.Figure:
    """Stage-1 size against the exact and the asymptotic birthday sizes for the observed maximum count."""
    t = tables["birthday"]
    runs = layout.listed_runs(t, params)
    t = t.set_index("run").reindex(runs)
    fig = go.Figure()
    series = [("stage1_size", "stage-1 candidates"),
              ("exact_p50", "exact size (p=0.5) for the observed max count k"),
              ("bound_p50", "asymptotic bound (p=0.5) for k"),
              ("next_bound_p50", "asymptotic bound (p=0.5) for k + 1")]
    for i, (column, name) in enumerate(series):
        if column not in t:
            continue
        fig.add_trace(go.Bar(x=runs, y=t[column], name=name, marker_color=COLORS[i]))
    if "p_max_count" in t:
        fig.update_xaxes(tickvals=runs, ticktext=[f"{run}<br>k = {int(k)}, P(max ≥ k) = {p:.3f}"
                                                  for run, k, p in zip(runs, t["max_count"], t["p_max_count"])])
    values = t[[c for c, _ in series if c in t]].to_numpy(float)
    values = values[np.isfinite(values) & (values > 0)]
    # bars need a zero baseline: a log axis only where the values span more than two decades
    log = len(values) > 0 and values.max() / values.min() > 100
    fig.update_layout(title="Most frequent stage-1 prefix against uniform sampling (generalized birthday problem)"
                      "<br><sup>P(max ≥ k): exact probability that uniform sampling of the stage-1 candidates "
                      "repeats some prefix k times or more</sup>",
                      barmode="group", yaxis_title="sample size (candidates)", yaxis_type="log" if log else "linear",
                      template=TEMPLATE, height=560)
    layout.top_legend(fig, top_px=130)
    return fig


def improvement_lag(tables, params) -> go.Figure:
    """Creations between a new best model becoming available and its first child, against p/s; one
    panel per run on common axes (in one panel the runs' points coincide at the end of stage 1)."""
    t = tables["improvement_lag"]
    runs = layout.listed_runs(t, params) or ["(no runs)"]
    fig, cells, _ = layout.grid(runs, cols=4, row_px=230, gap_px=80, hgap=0.04, top=130)
    low = layout.bottom_cells(cells)
    for i, (run, (r, c)) in enumerate(zip(runs, cells)):
        sub = t[(t["run"] == run) & t["lag"].notna()]
        color = COLORS[i % len(COLORS)]
        for superseded, part in ((False, sub[~sub["superseded"]]), (True, sub[sub["superseded"]])):
            fig.add_trace(go.Scatter(
                x=part["available_at"].astype(float), y=part["lag"].astype(float), mode="markers",
                name=run + (" (superseded first)" if superseded else ""), legendgroup=run, showlegend=False,
                marker=dict(color=color, size=9, symbol="circle-open" if superseded else "circle",
                            line=dict(width=2, color=color)),
                customdata=part[["job_id", "quality", "lag_seconds"]],
                hovertemplate="model %{customdata[0]} (quality %{customdata[1]:.4f}): lag %{y} creations,"
                " %{customdata[2]:.1f} s<extra>" + run + "</extra>",
            ), row=r, col=c)
        summary = tables.get("improvement_lag_summary")
        km = summary.loc[summary["run"] == run, "mean_lag"].dropna() if summary is not None else []
        if len(km):
            fig.add_hline(y=float(km.iloc[0]), line_dash="dash", line_color=color, row=r, col=c,
                          annotation_text=f"Kaplan-Meier mean {float(km.iloc[0]):.1f}", annotation_position="bottom right",
                          annotation_font_size=11)
        expected = t.loc[t["run"] == run, "expected_lag"].dropna()
        if len(expected):
            fig.add_hline(y=float(expected.iloc[0]), line_dash="dot", line_color="grey", row=r, col=c,
                          annotation_text=f"p/s = {float(expected.iloc[0]):g}", annotation_position="top left",
                          annotation_font_size=11)
        if (r, c) in low:
            fig.update_xaxes(title_text="became available at (job id)", row=r, col=c)
    lags = t["lag"].dropna()
    top = max(float(lags.max()) if len(lags) else 1.0, float(t["expected_lag"].max()) if len(t) else 1.0)
    fig.update_yaxes(matches="y", range=[-0.5, top + 1], dtick=1 if top <= 8 else 2 if top <= 20 else None)
    fig.update_xaxes(matches="x")
    layout.shared_ytitle(fig, "lag (creations)", shift_px=-45)
    fig.update_layout(title="Lag from a new best model to its first use as a parent"
                      "<br><sup>filled: first used while still the best; open: superseded before its first use; "
                      "dotted: p/s; dashed: Kaplan-Meier mean lag (censored cases included)</sup>", template=TEMPLATE, showlegend=False)
    return fig


FIGURES = {
    "prefix_histograms": prefix_histograms,
    "prefix_animation": prefix_animation,
    "tiers": tiers,
    "donor_probability": donor_probability,
    "birthday": birthday,
    "improvement_lag": improvement_lag,
}

CAPTIONS = {name: f"rq3_{name}.rst" for name in FIGURES}
