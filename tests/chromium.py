"""Headless Chromium for the night page's tests (not a test module): a screenshot and the DOM after load.

Debian's `chromium` (installed by .ci/run). Each call gets a fresh profile folder; networking, sync, updates and
QUIC are off, so the browser reaches nothing outside the page file (which embeds its plots).
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--disable-extensions", "--mute-audio")
WIDTH, HEIGHT = 1280, 7200  # tall enough for the whole page in one screenshot


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


@pytest.fixture(scope="session")
def chromium_binary() -> str:
    binary = find_chromium()
    if binary is None:
        pytest.skip("no chromium found (apt package `chromium`, which .ci/run installs): the page's browser check "
                    "cannot run here")
    return binary


def _run(binary: str, page: Path, *extra: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="recs-chromium-") as profile:
        return subprocess.run([binary, *FLAGS, f"--user-data-dir={profile}", f"--window-size={WIDTH},{HEIGHT}",
                               *extra, page.resolve().as_uri()],
                              capture_output=True, text=True, timeout=180, check=True)


def screenshot(binary: str, page: Path, out: Path) -> Path:
    _run(binary, page, f"--screenshot={out}")
    assert out.exists(), f"chromium wrote no screenshot of {page}"
    return out


def dump_dom(binary: str, page: Path) -> str:
    return _run(binary, page, "--dump-dom").stdout


def assert_rendered(binary: str, page: Path, out: Path, headings: list[str], plotted: list[str]) -> str:
    """Opens `page` in Chromium: the screenshot is a `WIDTH` x `HEIGHT` PNG that is not blank and shows plot
    colours, and the DOM after load has every heading and, in order, one plot image per `plotted` heading.
    Returns the DOM."""
    import html
    import re

    from PIL import Image

    screenshot(binary, page, out)
    with Image.open(out) as im:
        assert (im.format, im.size) == ("PNG", (WIDTH, HEIGHT))
        small = im.convert("RGB").resize((WIDTH // 4, HEIGHT // 4))
    colors = small.getcolors(maxcolors=1 << 20)
    inked = sum(n for n, px in colors if px != (255, 255, 255)) / (small.width * small.height)
    assert len(colors) > 200 and inked > 0.05, f"the screenshot {out} looks blank ({len(colors)} colours)"
    plot_blue = sum(n for n, (r, g, b) in colors if abs(r - 0x15) < 30 and abs(g - 0x65) < 30 and abs(b - 0xc0) < 30)
    assert plot_blue > 100, f"no plot colour in the screenshot {out}"
    dom = dump_dom(binary, page)
    for heading in headings:
        assert f">{html.escape(heading, quote=False)}</h2>" in dom, heading
    images = re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,[A-Za-z0-9+/=]{2000,}">', dom)
    assert [alt.split(":")[0] for alt in images] == [h.split(":")[0] for h in plotted]
    return dom
