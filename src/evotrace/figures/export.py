"""Write one plotly figure to every requested path: .html (interactive, plotly.js embedded once per
file), .pdf and .png (static, kaleido driving a headless Chromium).

A static image takes its size from the figure (layout.width / layout.height, which a figure sets when its
height grows with its facet rows), else from the defaults below; explicit width/height arguments win."""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path

import plotly.graph_objects as go

STATIC = {".pdf", ".png", ".svg"}
DEFAULT_WIDTH, DEFAULT_HEIGHT = 1100, 650


def static_size(fig: go.Figure, width: int | None = None, height: int | None = None) -> tuple[int, int]:
    """(width, height) of a static export: the argument, else the figure's own layout, else the default."""
    return (int(width or fig.layout.width or DEFAULT_WIDTH), int(height or fig.layout.height or DEFAULT_HEIGHT))


def save(fig: go.Figure, paths, *, width: int | None = None, height: int | None = None, scale: float = 2.0) -> None:
    save_many([(fig, paths)], width=width, height=height, scale=scale)


def save_many(figures, *, width: int | None = None, height: int | None = None, scale: float = 2.0) -> None:
    """Write each (figure, paths) pair, every static image through one Chromium."""
    figures = [(fig, [Path(p) for p in paths]) for fig, paths in figures]
    for _, paths in figures:
        for path in paths:
            if path.suffix.lower() not in STATIC | {".html"}:
                raise ValueError(f"cannot export a figure to {path}: use .html, .pdf, .png or .svg")
    with _browser(sum(p.suffix.lower() in STATIC for _, paths in figures for p in paths)):
        for fig, paths in figures:
            w, h = static_size(fig, width, height)
            for path in paths:
                path.parent.mkdir(parents=True, exist_ok=True)
                if path.suffix.lower() == ".html":
                    fig.write_html(path, include_plotlyjs=True, full_html=True, auto_play=False)
                else:
                    fig.write_image(path, width=w, height=h, scale=scale if path.suffix.lower() == ".png" else 1)


@contextlib.contextmanager
def _browser(images: int):
    """One headless Chromium for all static images of a call: kaleido otherwise starts one per image,
    which takes seconds each."""
    if not images:
        yield
        return
    import kaleido

    _chromium_path()
    if images == 1:
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The kopts argument is ignored", category=UserWarning)
        kaleido.start_sync_server(silence_warnings=True)
        try:
            yield
        finally:
            kaleido.stop_sync_server(silence_warnings=True)


def _chromium_path() -> None:
    """kaleido looks for Chrome; point it at Debian's chromium when that is what the machine has."""
    if "BROWSER_PATH" not in os.environ:
        for candidate in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
            if os.path.exists(candidate):
                os.environ["BROWSER_PATH"] = candidate
                break
