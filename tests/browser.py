"""Open a report page in a real headless Chromium and say what a reader would find wrong with it.

    check = check_page(Path("report/report.html"), Path("shot.png"))
    assert not check.problems(), "\n".join(check.problems())

What counts as a problem: a console error, an uncaught page error, an image that did not load, a
request that would leave the machine (the report is one self-contained file: every request other
than `file:` and `data:` is blocked and recorded), and a section that breaks the report contract.
The contract (`ptbench.reports.render`): every section is `<section class="ptbench-section"
id="...">` with an `<h2>`, and holds content (an element besides the h2 with visible text, an
image, a table or an svg) or a `<p class="ptbench-empty">` saying why it is empty.

Chromium is Debian's (`apt-get install chromium`), driven by Playwright for Python with
`executable_path`: Playwright's own browser download is not used (install the package with
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1). Launching takes about a second; to check several pages,
open one browser with `launch()` and pass it to `check_page`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import Browser, ConsoleMessage, Route, sync_playwright

MISSING_CHROMIUM = "chromium not installed (Debian: apt-get install chromium)"
LOCAL_SCHEMES = ("file", "data")
VIEWPORT = {"width": 1280, "height": 800}
TIMEOUT_MS = 15_000

# Runs in the page after `load`. Returns one sentence for every way a section breaks the
# contract. `innerText` of an element that is not rendered falls back to its textContent, so
# visibility is asked separately (checkVisibility: display, visibility, content-visibility).
_SECTIONS_JS = r"""
() => {
  const visible = (el) => el.checkVisibility({visibilityProperty: true, opacityProperty: true});
  const media = "img, table, svg";
  const hasContent = (node) => {
    if (node.nodeType === Node.TEXT_NODE) return node.textContent.trim() !== "";
    if (node.nodeType !== Node.ELEMENT_NODE || !visible(node)) return false;
    if (node.matches(media)) return true;
    if ([...node.querySelectorAll(media)].some(visible)) return true;
    return node.innerText.trim() !== "";
  };
  const sections = [...document.querySelectorAll("section.ptbench-section")];
  if (sections.length === 0)
    return ["the page has no <section class=\"ptbench-section\"> at all"];
  const found = [];
  sections.forEach((s, i) => {
    const name = s.id ? `section #${s.id}` : `section ${i + 1} (no id)`;
    const say = (problem) => found.push(`${name} ${problem}`);
    if (!s.id) say("has no id");
    const h2 = s.querySelector(":scope > h2");
    if (!h2 || h2.innerText.trim() === "") say("has no <h2> title");
    const reasons = [...s.querySelectorAll(".ptbench-empty")];
    const content = [...s.childNodes].some((n) =>
        n !== h2 && !(n.nodeType === Node.ELEMENT_NODE && n.matches(".ptbench-empty")) &&
        hasContent(n));
    if (content) return;
    if (reasons.length === 0) say("is empty: no content and no <p class=\"ptbench-empty\"> reason");
    else if (!reasons.some((p) => visible(p) && p.innerText.trim() !== ""))
      say("is empty and its ptbench-empty paragraph gives no reason (no text)");
  });
  return found;
}
"""

_BROKEN_IMAGES_JS = r"""
() => [...document.images]
  .filter((img) => img.naturalWidth === 0)
  .map((img) => img.getAttribute("src") || "(no src)")
"""


@dataclass
class PageCheck:
    """What one page load showed; `problems()` says it in plain words."""

    screenshot: Path
    """The full-page PNG."""
    console_errors: list[str] = field(default_factory=list)
    """Each console message of type error: console.error calls, resources that failed to load
    (with their URL; not those blocked here, which are `offsite_requests`)."""
    page_errors: list[str] = field(default_factory=list)
    """Uncaught exceptions and unhandled rejections."""
    broken_images: list[str] = field(default_factory=list)
    """`src` of each <img> whose naturalWidth is 0 after load (data: URIs shortened)."""
    offsite_requests: list[str] = field(default_factory=list)
    """URLs the page asked for with a scheme other than file: or data: (blocked)."""
    empty_sections: list[str] = field(default_factory=list)
    """Sections that break the contract: empty, a reason-less ptbench-empty, no h2, no id."""

    def problems(self) -> list[str]:
        """One plain sentence per problem; empty when the page is clean."""
        return ([f"console error: {m}" for m in self.console_errors]
                + [f"uncaught error in the page: {m}" for m in self.page_errors]
                + [f"image did not load: {s}" for s in self.broken_images]
                + [f"request off the machine (blocked; the report must be self-contained): {u}"
                   for u in self.offsite_requests]
                + list(self.empty_sections))


def chromium_path() -> str | None:
    """Debian's chromium on PATH, or None."""
    return shutil.which("chromium")


@contextlib.contextmanager
def launch() -> Iterator[Browser]:
    """A headless Chromium for `check_page`, closed on exit; RuntimeError without chromium."""
    executable = chromium_path()
    if executable is None:
        raise RuntimeError(MISSING_CHROMIUM)
    # Chromium's sandbox cannot start as root (CI and the dev machines run as root).
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=args, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def _short(url: str, limit: int = 80) -> str:
    return url if len(url) <= limit else url[: limit - 3] + "..."


def _console_errors(raw: list[tuple[str, str]], blocked: list[str]) -> list[str]:
    """Console errors, less the load failures that this check's own blocking caused (those are
    reported once, as off-machine requests); a failed load names the resource."""
    errors = []
    for text, url in raw:
        if url in blocked and "ERR_BLOCKED_BY_CLIENT" in text:
            continue
        errors.append(f"{text}: {_short(url)}" if text.startswith("Failed to load") else text)
    return errors


def check_page(html: Path, screenshot: Path, *, browser: Browser | None = None) -> PageCheck:
    """Load `html` from disk, record what went wrong, save a full-page screenshot."""
    if browser is None:
        with launch() as own:
            return check_page(html, screenshot, browser=own)

    check = PageCheck(screenshot=screenshot)

    def route(r: Route) -> None:
        url = r.request.url
        if urlsplit(url).scheme in LOCAL_SCHEMES:
            r.continue_()
        else:
            check.offsite_requests.append(url)
            r.abort("blockedbyclient")

    console_raw: list[tuple[str, str]] = []

    def console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            console_raw.append((msg.text, msg.location.get("url", "")))

    context = browser.new_context(viewport=VIEWPORT, service_workers="block")
    try:
        context.route("**/*", route)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("console", console)
        page.on("pageerror", lambda exc: check.page_errors.append(str(exc)))
        page.goto(html.resolve().as_uri(), wait_until="load")
        check.console_errors = _console_errors(console_raw, check.offsite_requests)
        check.broken_images = [_short(s) for s in page.evaluate(_BROKEN_IMAGES_JS)]
        check.empty_sections = page.evaluate(_SECTIONS_JS)
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=screenshot, full_page=True)
    finally:
        context.close()
    return check
