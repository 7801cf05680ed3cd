"""RQ2 figures (Section V-B): Fig. 2 and the locality and scheduling-quanta views, drawn from the rq2 tables."""

from __future__ import annotations

import plotly.graph_objects as go

from . import layout
from .layout import COLORS, TEMPLATE

SYMBOLS = {2: "circle", 3: "x", 4: "triangle-up"}
OFFSET = {2: -0.15, 3: 0.0, 4: 0.15}  # worker offset of each popularity rank, so coinciding reads stay visible


def tensor_scatter(tables, params) -> go.Figure:
    """Fig. 2: which workers read the 2nd-4th most popular tensors when; one panel per run. Each rank is
    drawn a little above or below its worker's line (rank 2 below, 4 above) so that reads of several
    popular tensors by one candidate do not hide one another."""
    points = tables["popular_tensor_reads"]
    runs = layout.listed_runs(points, params) or ["(no tensor reads)"]
    fig, cells, rows = layout.grid(runs, cols=1, row_px=170, gap_px=75, top=140)
    workers = sorted(int(w) for w in points["worker"].dropna().unique()) or [0]
    for row, run in enumerate(runs, start=1):
        sub = points[points["run"] == run]
        for rank, part in sub.groupby("rank", sort=True):
            rank = int(rank)
            fig.add_trace(
                go.Scatter(
                    x=part["start_time"],
                    y=part["worker"] + OFFSET.get(rank, 0.0),
                    mode="markers",
                    name=f"tensor popularity rank {rank}",
                    legendgroup=f"rank{rank}",
                    showlegend=row == 1,
                    opacity=0.5,
                    marker=dict(symbol=SYMBOLS.get(rank, "diamond"), size=9, color=COLORS[(rank - 2) % len(COLORS)],
                                line=dict(width=1, color=COLORS[(rank - 2) % len(COLORS)])),
                    customdata=part[["tensor_id", "reads", "job_id", "worker"]],
                    hovertemplate="worker %{customdata[3]}<br>t=%{x:.1f} s<br>tensor %{customdata[0]} "
                    "(%{customdata[1]} reads)<br>job %{customdata[2]}<extra></extra>",
                ),
                row=row,
                col=1,
            )
        fig.update_yaxes(**layout.worker_ticks(workers),
                         range=[workers[0] - 0.5, workers[-1] + 0.5], showgrid=True, zeroline=False, row=row, col=1)
    fig.update_xaxes(title_text="start time of the read (s since the search started)", row=rows, col=1)
    layout.shared_ytitle(fig, "worker (rank 2 below, 3 on, 4 above the line)")
    fig.update_layout(title="2nd-4th most popular tensors: worker x time of read", template=TEMPLATE)
    layout.top_legend(fig)
    return fig


def _run_bars(t, params, x: str, y: str, customdata, hover: str) -> go.Figure:
    """Grouped bars, one trace per run coloured by its place in the run order; the hover names the run."""
    fig = go.Figure()
    for i, run in enumerate(layout.listed_runs(t, params)):
        sub = t[t["run"] == run]
        fig.add_trace(go.Bar(x=sub[x], y=sub[y], name=run, marker_color=COLORS[i % len(COLORS)],
                             customdata=sub[customdata], hovertemplate=hover + "<extra>" + run + "</extra>"))
    fig.update_layout(barmode="group", template=TEMPLATE, height=520, legend_title_text="run")
    return fig


def reuse(tables, params) -> go.Figure:
    """Per-worker reuse within the next k candidates, one bar group per run."""
    t = tables["worker_reuse"]
    fig = _run_bars(t, params, "worker", "reuse_fraction", ["reused", "reads"],
                    "worker %{x}: %{customdata[0]} of %{customdata[1]} reads reused")
    k = int(t["k"].iloc[0]) if len(t) else params["analysis"]["reuse_k"]
    fig.update_layout(
        title=f"Worker-local reuse: reads repeated by the same worker within its next {k} candidates",
        xaxis_title="worker", yaxis_title="share of the worker's tensor reads", yaxis_range=[0, 1],
        yaxis_tickformat=".0%", xaxis=layout.worker_ticks(t["worker"].unique() if len(t) else []),
    )
    return fig


def coaccess(tables, params) -> go.Figure:
    """Distribution of the number of other workers reading the same tensor within dt of each read."""
    t = tables["coaccess"]
    fig = _run_bars(t, params, "other_workers", "fraction", "reads", "%{x} other workers: %{customdata} reads")
    dt = float(t["dt"].iloc[0]) if len(t) else params["analysis"]["coaccess_dt"]
    fig.update_layout(
        title=f"Cross-worker co-access: other workers reading the same tensor within {dt:g} s",
        xaxis_title=f"other workers reading the tensor within {dt:g} s of the read",
        yaxis_title="share of reads", yaxis_tickformat=".0%", xaxis_dtick=1,
    )
    return fig


def quanta(tables, params) -> go.Figure:
    """Wait a scheduling quanta of s out of w workers adds, E(s,w) - E(1,w) training-time standard
    deviations in seconds, against w, one line per s; a star marks each run's measured mean idle time
    per dispatch at its own (workers, quanta)."""
    t = tables["quanta"]
    idle = tables.get("quanta_idle")
    runs = layout.listed_runs(t, params) or ["(no runs)"]
    fig, cells, rows = layout.grid(runs, cols=4, row_px=240, gap_px=85, hgap=0.06)
    low = layout.bottom_cells(cells)
    for i, (run, (r, c)) in enumerate(zip(runs, cells)):
        sub = t[t["run"] == run]
        for j, (s, line) in enumerate(sub.groupby("s", sort=True)):
            fig.add_trace(
                go.Scatter(x=line["w"], y=line["wait_seconds"], mode="lines+markers", name=f"s = {s}",
                           legendgroup=f"s{s}", showlegend=i == 0, line_color=COLORS[j % len(COLORS)],
                           customdata=line[["wait_sd", "train_sd"]],
                           hovertemplate="w=%{x}: %{y:.2f} s (%{customdata[0]:.2f} sd of %{customdata[1]:.2f} s)"
                           "<extra></extra>"),
                row=r, col=c,
            )
        measured = idle[idle["run"] == run] if idle is not None else None
        if measured is not None and len(measured):
            m = measured.iloc[0]
            fig.add_trace(
                go.Scatter(x=[m["workers"]], y=[m["mean_idle_seconds"]], mode="markers+text",
                           marker=dict(symbol="star", size=13, color="black"), text=[f"measured, q = {int(m['quanta'])}"],
                           textposition="top right", textfont=dict(size=10), cliponaxis=False,
                           name="measured idle per dispatch",
                           legendgroup="measured", showlegend=i == 0,
                           hovertemplate="%{y:.2f} s mean idle per dispatch<extra></extra>"),
                row=r, col=c,
            )
        fig.update_xaxes(type="log", tickvals=sorted(sub["w"].unique()), title_text="workers w" if (r, c) in low else None,
                         row=r, col=c)
        fig.update_yaxes(rangemode="tozero", row=r, col=c)
    layout.shared_ytitle(fig, "wait E(s,w) - E(1,w), seconds")
    fig.update_layout(title="Scheduling quanta: expected wait for the s-th of w completions over the first"
                      "<br><sup>lines: bound for w workers starting together, scaled by the run's training-time sd;"
                      " star: measured mean idle per dispatch</sup>",
                      template=TEMPLATE, legend_title_text="quanta size")
    return fig


FIGURES = {
    "tensor_scatter": tensor_scatter,
    "reuse": reuse,
    "coaccess": coaccess,
    "quanta": quanta,
}

CAPTIONS = {name: f"rq2_{name}.rst" for name in FIGURES}
