"""Write one plotly figure to every requested path: .html (interactive, plotly.js embedded once per
file), .pdf and .png (static, kaleido driving a headless Chromium)."""

from __future__ import annotations

import os
from pathlib import Path

import plotly.graph_objects as go

STATIC = {".pdf", ".png", ".svg"}


def save(fig: go.Figure, paths, *, width: int = 1100, height: int = 650, scale: float = 2.0) -> None:
    for path in map(Path, paths):
        path.parent.mkdir(parents=True, exist_ok=True)
        suffix = path.suffix.lower()
        if suffix == ".html":
            fig.write_html(path, include_plotlyjs=True, full_html=True, auto_play=False)
        elif suffix in STATIC:
            _chromium_path()
            fig.write_image(path, width=width, height=height, scale=scale if suffix == ".png" else 1)
        else:
            raise ValueError(f"cannot export a figure to {path}: use .html, .pdf, .png or .svg")


def _chromium_path() -> None:
    """kaleido looks for Chrome; point it at Debian's chromium when that is what the machine has."""
    if "BROWSER_PATH" not in os.environ:
        for candidate in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
            if os.path.exists(candidate):
                os.environ["BROWSER_PATH"] = candidate
                break
