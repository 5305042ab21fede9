"""tests/browser.py in a real headless Chromium: a clean hand-made report page passes, and each
planted fault (console error, thrown exception, broken image, empty section, reason-less
ptbench-empty, hidden-only content, a request off the machine) is caught, alone, under its own
heading. Needs Debian's chromium (`apt-get install chromium`) and Playwright for Python."""

from __future__ import annotations

import base64
import struct
import zlib
from pathlib import Path

import pytest

from tests.browser import MISSING_CHROMIUM, VIEWPORT, check_page, chromium_path, launch

pytestmark = pytest.mark.skipif(chromium_path() is None, reason=MISSING_CHROMIUM)


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A solid-colour RGB PNG, encoded by hand (no imaging library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


BAR = "data:image/png;base64," + base64.b64encode(png(240, 60, (40, 120, 200))).decode()

SECTIONS = f"""
<section class="ptbench-section" id="verdict">
  <h2>Verdict</h2>
  <p>All 12 probes pass; no regression against run 41.</p>
  <table><tr><th>probe</th><th>result</th></tr><tr><td>torch</td><td>pass</td></tr></table>
</section>
<section class="ptbench-section" id="throughput">
  <h2>Throughput</h2>
  <p><img src="{BAR}" alt="tokens per second, last 14 runs"></p>
</section>
<section class="ptbench-section" id="new-failures">
  <h2>New failures</h2>
  <p class="ptbench-empty">No test failed tonight that passed in the baseline run.</p>
</section>
"""


def page(extra_sections: str = "", head: str = "", body_end: str = "") -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>ptbench</title>'
            f"{head}</head><body><h1>ptbench nightly</h1>{SECTIONS}{extra_sections}{body_end}"
            "</body></html>")


def section(ident: str, inner: str) -> str:
    return f'<section class="ptbench-section" id="{ident}"><h2>{ident}</h2>{inner}</section>'


CDN_CSS = "https://cdn.example.com/a.css"
# name -> (page, the PageCheck field that must catch it, text expected in that finding,
#          other fields the same fault legitimately shows up in: a missing file also logs
#          "Failed to load resource" in the console; a blocked image is also a broken one)
FAULTS = {
    "console.error": (page(body_end='<script>console.error("planted console error")</script>'),
                      "console_errors", "planted console error", set()),
    "thrown exception": (page(body_end='<script>throw new Error("planted page error")</script>'),
                         "page_errors", "planted page error", set()),
    "broken image": (page(section("missing", '<img src="missing.png" alt="lost">')),
                     "broken_images", "missing.png", {"console_errors"}),
    "empty section": (page(section("empty", "")),
                      "empty_sections", "section #empty is empty", set()),
    "reason-less ptbench-empty": (page(section("no-reason", '<p class="ptbench-empty"> </p>')),
                                  "empty_sections", "#no-reason is empty and its ptbench-empty",
                                  set()),
    "only hidden content": (page(section("hidden", '<p style="display:none">secret</p>')),
                            "empty_sections", "section #hidden is empty", set()),
    "offsite image": (page(section("remote", '<img src="https://example.com/x.png" alt="x">')),
                      "offsite_requests", "https://example.com/x.png", {"broken_images"}),
    "offsite stylesheet": (page(head=f'<link rel="stylesheet" href="{CDN_CSS}">'),
                           "offsite_requests", "https://cdn.example.com/a.css", set()),
}
FIELDS = ("console_errors", "page_errors", "broken_images", "offsite_requests", "empty_sections")


@pytest.fixture(scope="module")
def browser():
    with launch() as b:
        yield b


def write(tmp_path: Path, html: str) -> Path:
    path = tmp_path / "report.html"
    path.write_text(html, encoding="utf-8")
    return path


def test_clean_page_has_no_problems_and_a_screenshot(tmp_path):
    shot = tmp_path / "shots" / "clean.png"
    check = check_page(write(tmp_path, page()), shot)  # launches its own browser
    assert check.problems() == []
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width == VIEWPORT["width"] and height >= 200, (width, height)


@pytest.mark.parametrize("fault", FAULTS)
def test_planted_fault_is_caught(fault, browser, tmp_path):
    html, where, expected, also = FAULTS[fault]
    check = check_page(write(tmp_path, html), tmp_path / "shot.png", browser=browser)
    findings = getattr(check, where)
    assert any(expected in f for f in findings), (where, findings)
    assert any(expected in p for p in check.problems()), check.problems()
    for other in set(FIELDS) - {where} - also:
        assert getattr(check, other) == [], (other, getattr(check, other))


def test_request_from_a_script_is_caught(browser, tmp_path):
    """Not only markup: a fetch() by the page's own script is recorded and blocked too."""
    html = page(body_end="""<script>
      fetch("https://example.com/data.json").catch(() => {});
    </script>""")
    check = check_page(write(tmp_path, html), tmp_path / "shot.png", browser=browser)
    assert check.offsite_requests == ["https://example.com/data.json"]
    assert check.page_errors == [] and check.empty_sections == []
