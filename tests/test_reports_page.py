"""jobs.reports.page: the night's page from figures: every section with its plot, text escaped, a failure named;
opened in headless Chromium over hand-written nights with gaps (tests/night_reports.py)."""
import base64
import html
import io
import re

import pytest

from chromium import assert_rendered, chromium_binary  # noqa: F401  (a fixture)
from jobs.reports import plots
from jobs.reports.figures import night_figures, trend_figures
from jobs.reports.page import SECTIONS, render_page
from jobs.storage.datasets import Datasets
from night_reports import EVIL, write_night

D = "2026-08-14"
HEADINGS = [h for h, _ in SECTIONS]


def _nights(root, *, fail_at=None):
    """Six nights ending on D: two missing (a gap), tonight's with text an input could have planted."""
    data = Datasets(str(root))
    for ds, scale in (("2026-08-09", 0.6), ("2026-08-10", 0.7), ("2026-08-12", 0.9)):
        write_night(data.layout.root, ds, scale=scale, adopted=ds == "2026-08-10")
    write_night(data.layout.root, D, evil=True, fail_at=fail_at)
    tonight = night_figures(data, D)
    return tonight, trend_figures(data, tonight, 6)


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)]


def test_every_section_has_its_heading_and_a_plot(tmp_path):
    from PIL import Image

    page = render_page(*_nights(tmp_path))
    assert [h for h in HEADINGS if f">{h}</h2>" not in page] == []
    images = _images(page)
    assert len(images) == len(SECTIONS)
    for png in images:
        with Image.open(io.BytesIO(png)) as im:
            assert im.format == "PNG" and im.size == (plots.WIDTH * plots.DPI, plots.HEIGHT * plots.DPI)
    assert "Night 2026-08-14: <span class='good'>published</span>" in page
    assert "trends over 6 nights (2026-08-09 to 2026-08-14), 2 without reports" in page


def test_text_from_the_data_is_escaped(tmp_path):
    page = render_page(*_nights(tmp_path))
    assert "<script" not in page
    assert page.count(html.escape(EVIL)) >= 4  # a quarantine reason, the gate's reasons, tuning, the top item


def test_a_failed_night_says_which_stage_failed_and_why(tmp_path):
    tonight, trend = _nights(tmp_path, fail_at="gate")
    page = render_page(tonight, trend)
    assert "<h2 id='failure' class='bad'>Failure</h2>" in page
    assert "Stage <b>gate</b> failed (QualityGateError)" in page and "volume_vs_median_7d FAILED" in page
    assert "<script" not in page
    assert "the publish stage did not finish this night" in page
    assert len(_images(page)) == len(SECTIONS)  # the trends still show the nights before


def test_plots_of_a_night_with_nothing_but_a_failed_first_stage(tmp_path):
    """The least a night can leave: validate raised before writing anything else."""
    tonight = {"run_date": D, "status": "failed", "failure": {"stage": "validate", "error": "no raw events"},
               "stages": [{"stage": "validate", "status": "failed", "seconds": 1.0}]}
    page = render_page(tonight, [("2026-08-13", None), (D, tonight)])
    assert len(_images(page)) == len(SECTIONS) and "no raw events" in page


def test_the_page_renders_in_headless_chromium(tmp_path, chromium_binary):  # noqa: F811
    page = tmp_path / "index.html"
    page.write_text(render_page(*_nights(tmp_path / "data", fail_at="publish")))
    dom = assert_rendered(chromium_binary, page, tmp_path / "page.png", ["Failure", *HEADINGS], HEADINGS)
    assert "<script" not in dom  # the planted script is text in the browser too
    assert "&lt;script&gt;alert('x')&lt;/script&gt;" in dom


@pytest.mark.parametrize("plot", [p for _, p in SECTIONS], ids=[h for h, _ in SECTIONS])
def test_each_plot_draws_without_trend_history(plot):
    tonight = {"run_date": D, "stages": [], "status": "unknown"}
    assert plot(tonight, [(D, tonight)]).startswith("data:image/png;base64,")
