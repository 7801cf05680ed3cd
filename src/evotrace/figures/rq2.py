"""RQ2 figures (Section V-B): Fig. 2 and the locality and scheduling-quanta views, drawn from the rq2 tables."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

SYMBOLS = {2: "circle", 3: "x", 4: "triangle-up"}
COLORS = qualitative.Plotly


def _spacing(rows: int, wanted: float) -> float:
    """plotly refuses a vertical spacing above 1 / (rows - 1)."""
    return min(wanted, 0.9 / max(1, rows - 1))


def _runs(table, params) -> list[str]:
    present = list(dict.fromkeys(table["run"]))
    listed = [r for r in params.get("runs", {}) if r in present]
    return listed + [r for r in present if r not in listed]


def tensor_scatter(tables, params) -> go.Figure:
    """Fig. 2: which workers read the 2nd-4th most popular tensors when; one panel per run."""
    points = tables["popular_tensor_reads"]
    runs = _runs(points, params) or ["(no tensor reads)"]
    fig = make_subplots(rows=len(runs), cols=1, subplot_titles=runs, vertical_spacing=_spacing(len(runs), 0.12))
    for row, run in enumerate(runs, start=1):
        sub = points[points["run"] == run]
        for rank, part in sub.groupby("rank", sort=True):
            fig.add_trace(
                go.Scatter(
                    x=part["start_time"],
                    y=part["worker"],
                    mode="markers",
                    name=f"tensor popularity rank {rank}",
                    legendgroup=f"rank{rank}",
                    showlegend=row == 1,
                    opacity=0.5,
                    marker=dict(symbol=SYMBOLS.get(rank, "diamond"), size=9, color=COLORS[(rank - 2) % len(COLORS)]),
                    customdata=part[["tensor_id", "reads", "job_id"]],
                    hovertemplate="worker %{y}<br>t=%{x:.1f} s<br>tensor %{customdata[0]} (%{customdata[1]} reads)"
                    "<br>job %{customdata[2]}<extra></extra>",
                ),
                row=row,
                col=1,
            )
        fig.update_yaxes(title_text="worker", row=row, col=1)
        fig.update_xaxes(title_text="start time (s)", row=row, col=1)
    fig.update_layout(title="2nd-4th most popular tensors: worker x time of read", height=max(400, 320 * len(runs)))
    return fig


def reuse(tables, params) -> go.Figure:
    """Per-worker reuse within the next k candidates, one bar group per run."""
    t = tables["worker_reuse"]
    fig = go.Figure()
    for i, run in enumerate(_runs(t, params)):
        sub = t[t["run"] == run]
        fig.add_trace(
            go.Bar(x=sub["worker"], y=sub["reuse_fraction"], name=run, marker_color=COLORS[i % len(COLORS)],
                   customdata=sub[["reused", "reads"]],
                   hovertemplate="worker %{x}: %{customdata[0]} of %{customdata[1]} reads reused<extra>" + run + "</extra>")
        )
    k = int(t["k"].iloc[0]) if len(t) else params["analysis"]["reuse_k"]
    fig.update_layout(
        title=f"Worker-local reuse: reads repeated by the same worker within its next {k} candidates",
        barmode="group", xaxis_title="worker", yaxis_title="fraction of the worker's reads", yaxis_range=[0, 1],
    )
    return fig


def coaccess(tables, params) -> go.Figure:
    """Distribution of the number of other workers reading the same tensor within dt of each read."""
    t = tables["coaccess"]
    fig = go.Figure()
    for i, run in enumerate(_runs(t, params)):
        sub = t[t["run"] == run]
        fig.add_trace(go.Bar(
            x=sub["other_workers"], y=sub["fraction"], name=run, marker_color=COLORS[i % len(COLORS)],
            customdata=sub["reads"], hovertemplate="%{x} other workers: %{customdata} reads<extra>" + run + "</extra>",
        ))
    dt = float(t["dt"].iloc[0]) if len(t) else params["analysis"]["coaccess_dt"]
    fig.update_layout(
        title=f"Cross-worker co-access: other workers reading the same tensor within {dt:g} s",
        barmode="group", xaxis_title="other workers", yaxis_title="fraction of reads", xaxis_dtick=1,
    )
    return fig


def quanta(tables, params) -> go.Figure:
    """Delay bound of a scheduling quanta against the number of workers, one line per quanta size s."""
    t = tables["quanta"]
    runs = _runs(t, params) or ["(no runs)"]
    fig = make_subplots(rows=1, cols=len(runs), subplot_titles=runs, shared_yaxes=False)
    for col, run in enumerate(runs, start=1):
        sub = t[t["run"] == run]
        for i, (s, line) in enumerate(sub.groupby("s", sort=True)):
            fig.add_trace(
                go.Scatter(x=line["w"], y=line["delay_seconds"], mode="lines+markers", name=f"s = {s}",
                           legendgroup=f"s{s}", showlegend=col == 1, line_color=COLORS[i % len(COLORS)],
                           customdata=line[["delay_sd", "train_sd"]],
                           hovertemplate="w=%{x}: %{y:.2f} s (%{customdata[0]:.2f} sd of %{customdata[1]:.2f} s)"
                           "<extra></extra>"),
                row=1, col=col,
            )
        fig.update_xaxes(title_text="workers w", type="log", tickvals=sorted(sub["w"].unique()), row=1, col=col)
    fig.update_yaxes(title_text="delay bound E(w,w) - E(s,w), seconds", row=1, col=1)
    fig.update_layout(title="Scheduling quanta: upper bound on the delay of waiting for s of w workers")
    return fig


FIGURES = {
    "tensor_scatter": tensor_scatter,
    "reuse": reuse,
    "coaccess": coaccess,
    "quanta": quanta,
}

CAPTIONS = {name: f"rq2_{name}.rst" for name in FIGURES}
