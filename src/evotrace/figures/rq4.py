"""RQ4 figures (Fig. 3 and its companions), drawn only from the tables of evotrace.analysis.rq4."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from . import layout

STAGE_COLOUR = {1: "#9d9d9d", 2: "#4c78a8"}
WEBGL_POINTS = 20_000


def _grid(titles: list[str], cols: int = 2, row_px: int = 220, gap_px: int = 80, top: int = 140):
    fig, cells, _ = layout.grid(titles, cols=cols, row_px=row_px, gap_px=gap_px, hgap=0.07, top=top)
    return fig, cells


def _quality(tables: dict[str, pd.DataFrame], params: dict, trimmed: bool) -> go.Figure:
    table, summary = tables["quality"], layout.by_run(tables["quality_summary"])
    runs = layout.listed_runs(table, params)
    titles = (layout.run_titles(runs, tables["quality_summary"], lambda run, s: f"{run} ({int(s['hidden'])} below the axis)")
              if trimmed else runs)
    fig, cells = _grid(titles)
    bottom = layout.bottom_cells(cells)
    for i, (run, (r, c)) in enumerate(zip(runs, cells)):
        part = table[table["run"].astype(str) == run]
        for stage, colour in STAGE_COLOUR.items():
            points = part[part["stage"] == stage]
            scatter = go.Scattergl if len(part) > WEBGL_POINTS else go.Scatter
            fig.add_trace(scatter(x=points["end_time"], y=points["quality"], mode="markers",
                                  marker={"size": 4, "color": colour, "opacity": 0.6},
                                  name=f"observed, stage {stage}", legendgroup=f"stage{stage}",
                                  showlegend=i == 0, customdata=points["job_id"],
                                  hovertemplate="job %{customdata}<br>t=%{x:.1f} s<br>quality %{y:.4f}<extra></extra>"),
                          row=r, col=c)
        fig.add_trace(go.Scatter(x=part["end_time"], y=part["cummax"], mode="lines", line={"color": "#e45756", "width": 2, "shape": "hv"},
                                 name="cumulative max", legendgroup="cummax", showlegend=i == 0, hoverinfo="skip"),
                      row=r, col=c)
        if trimmed and run in summary.index:
            low, high = float(summary.loc[run, "trim_low"]), float(summary.loc[run, "max"])
            pad = 0.03 * (high - low) if high > low else 0.01
            fig.update_yaxes(range=[low, high + pad], row=r, col=c)
        fig.update_xaxes(title_text="end time (s since the search started)" if (r, c) in bottom else None, row=r, col=c)
    layout.shared_ytitle(fig, "quality", shift_px=-55)
    what = "trimmed to the upper part of the quality range" if trimmed else "full quality range"
    fig.update_layout(title=f"Observed and cumulative maximum quality ({what})", template=layout.TEMPLATE)
    layout.top_legend(fig)
    return fig


def quality_trimmed(tables: dict[str, pd.DataFrame], params: dict) -> go.Figure:
    """Fig. 3: the y-axis starts at the run's trim_low, separating the high performers."""
    return _quality(tables, params, trimmed=True)


def quality(tables: dict[str, pd.DataFrame], params: dict) -> go.Figure:
    """Fig. 3 untrimmed: shows the low performers that persist through the whole search."""
    return _quality(tables, params, trimmed=False)


def improvements(tables: dict[str, pd.DataFrame], params: dict) -> go.Figure:
    """Gain of each new maximum against the time it was reached: the diminishing returns."""
    table = tables["improvements"]
    fig = go.Figure()
    for run in layout.listed_runs(table, params):
        part = table[(table["run"].astype(str) == run) & table["gain"].notna()]
        fig.add_trace(go.Scatter(x=part["end_time"], y=part["gain"], mode="lines+markers", name=run,
                                 customdata=part[["job_id", "quality"]].to_numpy(),
                                 hovertemplate="job %{customdata[0]}: quality %{customdata[1]:.4f}<br>gain %{y:.4f}<extra></extra>"))
    gains = table["gain"].dropna().to_numpy(float)
    log = len(gains) > 1 and (gains > 0).all() and gains.max() / gains.min() > 20  # gains over decades: log axis
    fig.update_layout(title="Gain of each improvement of the maximum quality", template=layout.TEMPLATE,
                      xaxis_title="end time (s since the search started)",
                      yaxis_title="gain over the previous maximum" + (" (log scale)" if log else ""),
                      yaxis_type="log" if log else "linear", height=560, legend_title_text="run")
    if log:
        decades = range(int(np.floor(np.log10(gains.min()))), int(np.ceil(np.log10(gains.max()))) + 1)
        fig.update_yaxes(tickvals=[m * 10.0 ** e for e in decades for m in (1, 2, 5)], tickformat=".3~g")
    return fig


def rank_outcomes(tables: dict[str, pd.DataFrame], params: dict) -> go.Figure:
    """Share of candidates that ever became parents or donors by rank at insertion into a full
    population, against the one-draw bound p(X=0 | H(p, p-lambda, s)); the dotted line marks s."""
    table = tables["rank_outcomes"]
    runs = layout.listed_runs(table, params)
    cost = layout.by_run(tables["skip_store_cost"]) if "skip_store_cost" in tables else None

    def title(run, w):
        text = f"{run}<br><sup>parent among the s-1 worst in {int(w['worst_draws'])} of {int(w['draws'])} draws"
        if cost is not None and run in cost.index and cost.loc[run, "transfers"]:
            k = cost.loc[run]
            text += (f"<br>donor in {int(k['from_worst'])} of {int(k['transfers'])} transfers"
                     f" (−{int(k['positions_lost'])} prefix positions without them)")
        return text + "</sup>"

    titles = layout.run_titles(runs, tables.get("worst_parents"), title)
    fig, cells = _grid(titles, gap_px=115)
    low = layout.bottom_cells(cells)
    for i, (run, (r, c)) in enumerate(zip(runs, cells)):
        part = table[table["run"].astype(str) == run]
        fig.add_trace(go.Bar(x=part["rank"], y=part["parent_fraction"], name="ever a parent", marker_color="#4c78a8",
                             legendgroup="parent", showlegend=i == 0), row=r, col=c)
        fig.add_trace(go.Bar(x=part["rank"], y=part["donor_fraction"], name="ever a donor", marker_color="#54a24b",
                             legendgroup="donor", showlegend=i == 0), row=r, col=c)
        fig.add_trace(go.Scatter(x=part["rank"], y=part["transfer_bound"], mode="lines", name="p(X=0 | H(P, P-λ, s))",
                                 line={"color": "#e45756"}, legendgroup="bound", showlegend=i == 0), row=r, col=c)
        sample = params.get("runs", {}).get(run, {}).get("sample")
        if sample:
            fig.add_vline(x=int(sample) - 0.5, line={"dash": "dot", "color": "#404040"}, row=r, col=c,
                          annotation_text=f"s = {int(sample)}", annotation_position="top right", annotation_font_size=11)
        fig.update_xaxes(title_text="rank λ at insertion (1 = worst)" if (r, c) in low else None, row=r, col=c)
        fig.update_yaxes(range=[0, 1.02], tickformat=".0%", row=r, col=c)
    layout.shared_ytitle(fig, "share of the candidates inserted at rank λ", shift_px=-55)
    fig.update_layout(title="Rank at insertion against later use as parent or donor"
                      "<br><sup>the bound limits parents only: a donor is any stored model with the longest common prefix</sup>",
                      template=layout.TEMPLATE, barmode="group")
    layout.top_legend(fig)
    return fig


FIGURES = {
    "quality_trimmed": quality_trimmed,
    "quality": quality,
    "improvements": improvements,
    "rank_outcomes": rank_outcomes,
}

CAPTIONS = {name: f"rq4_{name}.rst" for name in FIGURES}
