"""Writes the night's page, `reports/dt=D/index.html` (atomically, through `jobs.storage.io`)."""
from __future__ import annotations

import logging
import os
import posixpath
from urllib.parse import quote

from jobs.config import RecsConfig
from jobs.reports.figures import night_figures, trend_figures
from jobs.reports.page import render_page
from jobs.stages import STAGES
from jobs.storage import io
from jobs.storage.datasets import Datasets
from jobs.storage.layout import Layout

log = logging.getLogger(__name__)

PAGE = "index.html"


def page_path(data_root: str, run_date: str) -> str:
    return posixpath.join(Layout(data_root).reports(run_date), PAGE)


def page_link(path: str) -> str:
    """The page as a link a terminal can open: `file:///...` for a local path (the `=` of `dt=` left readable),
    the URI itself on object storage."""
    if "://" in path:
        return path
    return "file://" + quote(os.path.abspath(path), safe="/=")


def write_page(cfg: RecsConfig, run_date: str, stages=STAGES) -> str:
    """Renders night `run_date` with the trends of the `reports.trend_nights` nights ending on it; returns the
    page's path."""
    data = Datasets(cfg.data_root)
    tonight = night_figures(data, run_date, stages)
    if tonight is None:
        raise FileNotFoundError(f"no reports of night {run_date} under {data.layout.reports(run_date)}: "
                                "run the night first")
    page = render_page(tonight, trend_figures(data, tonight, cfg.reports.trend_nights, stages))
    path = page_path(cfg.data_root, run_date)
    io.write_text(path, page)
    log.info("night %s: page %s", run_date, path)
    return path
