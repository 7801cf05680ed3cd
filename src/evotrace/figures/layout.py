"""Layout helpers shared by the figure modules: the static size of a figure grows with its facet rows,
facet spacing in pixels, and one shared axis title instead of one per facet; the order of the runs and the
per-run facet titles."""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

WIDTH = 1100  # figures.export default width of a static image
TOP, BOTTOM = 100, 80  # margins (px) around the plotting area of a facet grid
LEFT, RIGHT = 90, 40
TEMPLATE = "plotly_white"
COLORS = qualitative.Plotly


def listed_runs(table: pd.DataFrame, params: dict) -> list[str]:
    """The runs of a table that get a facet each: those of analysis.figure_runs when the study names
    some (a design study has dozens of runs), else all; in the order params lists them, then the others
    in order of appearance."""
    present = list(dict.fromkeys(table["run"].astype(str))) if len(table) else []
    chosen = params.get("analysis", {}).get("figure_runs")
    if chosen:
        present = [r for r in present if r in set(chosen)]
    listed = [r for r in params.get("runs", {}) if r in present]
    return listed + [r for r in present if r not in listed]


MAX_LABELLED_WORKERS = 40


def worker_ticks(workers) -> dict:
    """Axis settings for worker ranks: a labelled tick per worker up to MAX_LABELLED_WORKERS of them, beyond
    that plotly's own ticks (with a tick per worker at W=1000, Chromium took minutes to draw one panel)."""
    workers = sorted(int(w) for w in workers)
    if len(workers) <= MAX_LABELLED_WORKERS:
        return dict(tickmode="array", tickvals=workers, ticktext=[str(w) for w in workers])
    return dict(tickmode="auto", nticks=20)


def by_run(table: pd.DataFrame) -> pd.DataFrame:
    """A one-row-per-run table indexed by the run name as text."""
    return table.assign(run=table["run"].astype(str)).set_index("run")


def run_titles(runs: list[str], table: pd.DataFrame | None, title) -> list[str]:
    """Facet titles: title(run, row of the run in the per-run `table`) where the table has the run, else
    the run's name."""
    rows = by_run(table) if table is not None else None
    return [title(run, rows.loc[run]) if rows is not None and run in rows.index else run for run in runs]


def height(rows: int, row_px: int = 220, gap_px: int = 70, top: int = TOP, bottom: int = BOTTOM) -> int:
    """Pixel height of a figure with `rows` facet rows of `row_px` each, `gap_px` apart."""
    rows = max(1, rows)
    return int(top + bottom + rows * row_px + (rows - 1) * gap_px)


def spacing(rows: int, gap_px: int, total_px: int, top: int = TOP, bottom: int = BOTTOM) -> float:
    """A gap of `gap_px` between facet rows as the fraction make_subplots wants (plotly refuses more than
    1 / (rows - 1))."""
    if rows <= 1:
        return 0.0
    return min(gap_px / max(1, total_px - top - bottom), 0.9 / (rows - 1))


def grid(titles: list[str], cols: int, row_px: int = 220, gap_px: int = 80, hgap: float = 0.08, top: int = TOP,
         **kwargs) -> tuple[go.Figure, list[tuple[int, int]], int]:
    """Facet grid of len(titles) panels, `cols` wide, row-major; returns the figure (height set), the
    (row, col) of each panel and the number of rows."""
    n = max(1, len(titles))
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    total = height(rows, row_px, gap_px, top=top)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles or None, horizontal_spacing=hgap if cols > 1 else 0.02,
                        vertical_spacing=spacing(rows, gap_px, total, top=top), **kwargs)
    fig.update_layout(height=total, margin=dict(t=top, b=BOTTOM, l=LEFT, r=RIGHT))
    return fig, [(i // cols + 1, i % cols + 1) for i in range(len(titles))], rows


def bottom_cells(cells: list[tuple[int, int]]) -> set[tuple[int, int]]:
    """The lowest occupied panel of each column: where a grid's x-axis titles go."""
    low: dict[int, int] = {}
    for r, c in cells:
        low[c] = max(low.get(c, 0), r)
    return {(r, c) for c, r in low.items()}


def shared_ytitle(fig: go.Figure, text: str, shift_px: int = -60) -> None:
    """One y-axis title for every facet row, left of the plotting area, centred vertically."""
    fig.add_annotation(text=text, xref="paper", yref="paper", x=0, y=0.5, xshift=shift_px, xanchor="right",
                       yanchor="middle", textangle=-90, showarrow=False, font=dict(size=14))


def row_label(fig: go.Figure, row: int, text: str, col: int = 1) -> None:
    """A facet-row label right of the plotting area, centred on the row (plotly express style)."""
    domain = fig.get_subplot(row, col).yaxis.domain
    fig.add_annotation(text=text, xref="paper", yref="paper", x=1, xshift=8, xanchor="left",
                       y=(domain[0] + domain[1]) / 2, yanchor="middle", textangle=90, showarrow=False,
                       font=dict(size=13))


def top_legend(fig: go.Figure, top_px: int = 140) -> None:
    """A horizontal legend between the title and the plotting area (and its facet titles), so it hides
    no data and takes no width from the facets; the top margin grows to make room."""
    total = fig.layout.height or 650
    fig.update_layout(margin=dict(t=top_px),
                      title=dict(yref="container", y=1 - 32 / total, yanchor="middle"),
                      legend=dict(orientation="h", x=0, xanchor="left", yref="container", y=1 - 78 / total,
                                  yanchor="middle", itemsizing="constant"))
