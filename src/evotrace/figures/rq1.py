"""RQ1 figures (Fig. 1 and its companions), drawn only from the tables of evotrace.analysis.rq1."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from . import layout

TRIE_HEIGHT_PX = 480  # least plot height of the trie; it grows with the leaves (TRIE_LEAF_PX each)
TRIE_LEAF_PX = 16
TRIE_MARGIN_PX = 170  # title, x-axis title and margins around the trie's plot


def _grid(titles: list[str], cols: int = 2, row_px: int = 220, gap_px: int = 70, hgap: float = 0.08, top: int = layout.TOP):
    fig, cells, _ = layout.grid([str(t) for t in titles], cols=cols, row_px=row_px, gap_px=gap_px, hgap=hgap, top=top)
    return fig, cells


def trie_layout(nodes: pd.DataFrame) -> pd.Series:
    """Vertical position of each node: leaves one unit apart in the order of their choice paths
    (a child sits inside its parent's band), each inner node at the mean of its children."""
    nodes = nodes.sort_values(["depth", "node"])
    path: dict[int, tuple] = {}
    children: dict[int, list[int]] = {}
    for node, parent, choice in zip(nodes["node"], nodes["parent_node"], nodes["choice"]):
        node, parent = int(node), int(parent)
        path[node] = path.get(parent, ()) + ((int(choice),) if parent >= 0 else ())
        children.setdefault(parent, []).append(node)
    leaves = sorted((n for n in path if n not in children), key=path.get)
    y = {leaf: -float(i) for i, leaf in enumerate(leaves)}
    for node in sorted(path, key=lambda n: -len(path[n])):
        if node in children:
            y[node] = float(np.mean([y[c] for c in children[node]]))
    return pd.Series(y).reindex(nodes["node"].astype(int).to_numpy()).set_axis(nodes.index)


def trie(tables: dict[str, pd.DataFrame], params: dict) -> go.Figure:
    """Fig. 1: the pruned prefix trie of each run in analysis.trie.runs, left to right; label = choice
    and share of candidates with the prefix, colour = transfers that covered the prefix."""
    table = tables["trie"]
    wanted = [str(r) for r in params.get("analysis", {}).get("trie", {}).get("runs", [])]
    present = set(table["run"].astype(str))
    runs = [r for r in wanted if r in present] or layout.listed_runs(table, params)
    fig = make_subplots(rows=1, cols=max(1, len(runs)), subplot_titles=runs or None, horizontal_spacing=0.04)
    drawn = table[table["run"].astype(str).isin(runs) & (table["parent_node"] >= 0)]
    top = float(drawn["transfers"].max()) if len(drawn) else 1.0
    leaves = [int((~part["node"].isin(part["parent_node"])).sum()) for _, part in
              table[table["run"].astype(str).isin(runs)].groupby("run")] or [1]
    plot_px = max(TRIE_HEIGHT_PX, TRIE_LEAF_PX * max(leaves))
    for col, run in enumerate(runs, start=1):
        nodes = table[table["run"].astype(str) == run].copy()
        nodes["y"] = trie_layout(nodes)
        root, inner = nodes[nodes["parent_node"] < 0], nodes[nodes["parent_node"] >= 0]
        edges = inner.merge(nodes[["node", "depth", "y"]], left_on="parent_node", right_on="node", suffixes=("", "_up"))
        gap = np.full(len(edges), np.nan)
        fig.add_trace(go.Scatter(
            x=np.c_[edges["depth_up"], edges["depth"], gap].ravel(), y=np.c_[edges["y_up"], edges["y"], gap].ravel(),
            mode="lines", line={"color": "#b0b0b0", "width": 1}, hoverinfo="skip", showlegend=False,
            name=f"{run} edges"), row=1, col=col)
        spacing = plot_px / max(1, int((~nodes["node"].isin(nodes["parent_node"])).sum()))
        size = float(np.clip(0.8 * spacing, 5, 22))
        fig.add_trace(go.Scatter(
            x=inner["depth"], y=inner["y"], mode="markers+text", textposition="middle right",
            text=[f"{int(c)} · {100 * f:.1f}%" for c, f in zip(inner["choice"], inner["fraction"])],
            textfont={"size": float(np.clip(0.7 * spacing, 5, 11))},
            marker={"size": size, "color": inner["transfers"], "coloraxis": "coloraxis",
                    "line": {"color": "#404040", "width": 0.5}},
            customdata=np.c_[inner["prefix"].astype(str), inner["candidates"], inner["transfers"]],
            hovertemplate="prefix %{customdata[0]}<br>%{customdata[1]} candidates<br>"
                          "%{customdata[2]} transfers<extra></extra>",
            showlegend=False, name=run), row=1, col=col)
        fig.add_trace(go.Scatter(
            x=root["depth"], y=root["y"], mode="markers+text", text=["root"] * len(root), textposition="top center",
            marker={"size": size, "color": "white", "line": {"color": "#404040", "width": 1}},
            hoverinfo="skip", showlegend=False, name=f"{run} root"), row=1, col=col)
        fig.update_xaxes(title_text="prefix length (depth)", dtick=1, range=[-0.4, nodes["depth"].max() + 0.9],
                         row=1, col=col)
        fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, row=1, col=col)
    fig.update_layout(
        title="Trie of architecture sequences (prefixes below "
              f"{100 * params.get('analysis', {}).get('trie', {}).get('min_fraction', 0):g}% of candidates pruned)"
              "<br><sup>node label: choice · share of the run's candidates with that prefix</sup>",
        coloraxis={"colorscale": "RdBu_r", "cmin": 0, "cmax": max(top, 1.0),
                   "colorbar": {"title": "transfers<br>covering<br>the prefix"}},
        template=layout.TEMPLATE, height=plot_px + TRIE_MARGIN_PX,
        width=max(1100, 420 * len(runs)),
    )
    return fig


def choice_frequency(tables: dict[str, pd.DataFrame], params: dict) -> go.Figure:
    """Share of each choice at each position, one heatmap per run, on a shared colour scale."""
    table = tables["choice_frequency"]
    runs = layout.listed_runs(table, params)
    choices = int(table["choice"].max()) + 1 if len(table) else 1
    row_px = int(np.clip(9 * choices + 60, 200, 380))  # a panel tall enough for its choices
    fig, cells = _grid(runs, cols=2, row_px=row_px, gap_px=75)
    low = layout.bottom_cells(cells)
    for run, (r, c) in zip(runs, cells):
        part = table[table["run"].astype(str) == run]
        grid = part.pivot(index="choice", columns="position", values="fraction")
        uniform = part.pivot(index="choice", columns="position", values="uniform")
        few = grid.size <= 400
        fig.add_trace(go.Heatmap(
            z=grid.to_numpy(), x=grid.columns, y=grid.index, coloraxis="coloraxis",
            text=(100 * grid).round(1).to_numpy() if few else None, texttemplate="%{text}%" if few else None,
            customdata=uniform.to_numpy(), name=run,
            hovertemplate="position %{x}, choice %{y}: %{z:.1%} (uniform %{customdata:.1%})<extra></extra>",
        ), row=r, col=c)
        fig.update_xaxes(title_text="position" if (r, c) in low else None, dtick=1 if grid.shape[1] <= 16 else 5,
                         tickangle=0, row=r, col=c)
        fig.update_yaxes(dtick=1 if grid.shape[0] <= 10 else 5, row=r, col=c)
    layout.shared_ytitle(fig, "choice", shift_px=-40)
    fig.update_layout(title="Per-position choice frequency (blank: not a choice at that position)", template=layout.TEMPLATE,
                      coloraxis={"colorscale": "Viridis", "cmin": 0, "colorbar": {"title": "share", "tickformat": ".0%"}})
    return fig


def _against_expected(table: pd.DataFrame, summary: pd.DataFrame, params: dict, title_of, x: str, observed: str, expected: str, *,
                      colour: str, expected_name: str, line: dict, xtitle: str, yaxes: dict, ytitle: str,
                      ytitle_shift: int, **layout_kw) -> go.Figure:
    """One panel per run: bars of the observed column against the dashed line of the expected one; the
    panel title is title_of(run, row of the run in the per-run `summary`)."""
    runs = layout.listed_runs(table, params)
    fig, cells = _grid(layout.run_titles(runs, summary, title_of), cols=2, row_px=200, top=140)
    low = layout.bottom_cells(cells)
    for i, (run, (r, c)) in enumerate(zip(runs, cells)):
        part = table[table["run"].astype(str) == run]
        fig.add_trace(go.Bar(x=part[x], y=part[observed], name="observed", marker_color=colour,
                             legendgroup="observed", showlegend=i == 0), row=r, col=c)
        fig.add_trace(go.Scatter(x=part[x], y=part[expected], mode="lines+markers", name=expected_name,
                                 line={"color": "#e45756", "dash": "dash", **line}, legendgroup="uniform",
                                 showlegend=i == 0), row=r, col=c)
        fig.update_xaxes(title_text=xtitle if (r, c) in low else None, dtick=1 if len(part) <= 20 else None,
                         row=r, col=c)
        fig.update_yaxes(**yaxes, rangemode="tozero", row=r, col=c)
    layout.shared_ytitle(fig, ytitle, shift_px=ytitle_shift)
    fig.update_layout(template=layout.TEMPLATE, **layout_kw)
    layout.top_legend(fig)
    return fig


def mutation_positions(tables: dict[str, pd.DataFrame], params: dict) -> go.Figure:
    """Mutations per position against the run's mutation weights (uniform by default), with the chi-square result."""
    return _against_expected(tables["mutation_positions"], tables["mutation_uniformity"], params,
                             lambda run, t: f"{run}: χ²={t['chisq']:.2f}, dof={int(t['dof'])}, p={t['p_value']:.3g}",
                             "position", "mutations", "expected", colour="#4c78a8",
                             expected_name="expected (mutation weights)", line={}, xtitle="mutated position", yaxes={},
                             ytitle="mutations (stage-2 candidates)", ytitle_shift=-45,
                             title="Mutation position against the mutation weights", barmode="overlay")


def prefix_length(tables: dict[str, pd.DataFrame], params: dict) -> go.Figure:
    """Transferred prefix length of stage-2 candidates against the mutation alone (uniform: 1/L for 0..L-1)."""
    return _against_expected(tables["prefix_length"], tables["transfer_summary"], params,
                             lambda run, s: f"{run}: mean {s['mean_prefix_len']:.2f} vs {s['expected_mean_prefix_len']:.2f}",
                             "prefix_len", "fraction", "expected_fraction", colour="#54a24b",
                             expected_name="mutation alone", line={"shape": "hvh"},
                             xtitle="transferred prefix length", yaxes={"tickformat": ".0%"},
                             ytitle="share of stage-2 candidates", ytitle_shift=-55,
                             title="Transferred prefix length against the mutation alone")


FIGURES = {
    "trie": trie,
    "choice_frequency": choice_frequency,
    "mutation_positions": mutation_positions,
    "prefix_length": prefix_length,
}

CAPTIONS = {name: f"rq1_{name}.rst" for name in FIGURES}
