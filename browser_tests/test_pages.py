"""Open every page of the built book in headless Chromium and check what a reader sees.

    python scripts/build_book.py && pytest browser_tests

Needs Debian's chromium (`apt-get install chromium`) and the `playwright`
Python package (in requirements.txt), which drives it; no browser is
downloaded. The book is served from _build/html on a loopback port, under the
same path as on GitHub Pages (``html.baseurl`` in _config.yml), and like
GitHub Pages it answers an unknown address with 404.html. A page fails if it
requests anything from another site (the book must work offline). A
screenshot of each chapter is written to _build/screenshots/.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import threading
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest
import yaml

from companion.toc import chapters, toc_pages

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
# The flags keep Chromium from calling out to the network, which is closed here.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-default-apps", "--disable-extensions"]


def site_path() -> str:
    """The path the book is published under (GitHub Pages project site: /<repository>/)."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    path = urlparse(config.get("html", {}).get("baseurl") or "/").path or "/"
    return path if path.endswith("/") else path + "/"


class PagesLikeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves _build/html under ``prefix``; a missing file gets 404.html with status 404, as on GitHub Pages."""

    prefix = "/"

    def log_message(self, *args):
        pass

    def translate_path(self, path):
        if not path.startswith(self.prefix):
            return str(HTML / "no such file")
        return super().translate_path("/" + path[len(self.prefix):])

    def send_error(self, code, message=None, explain=None):
        page = HTML / "404.html"
        if code != 404 or not page.exists():
            return super().send_error(code, message, explain)
        body = page.read_bytes()
        self.send_response(404)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


@pytest.fixture(scope="session")
def site():
    if not (HTML / "index.html").exists():
        pytest.fail("no built book in _build/html: run `python scripts/build_book.py` first")
    prefix = site_path()
    handler = functools.partial(type("Handler", (PagesLikeHandler,), {"prefix": prefix}), directory=str(HTML))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}{prefix}"
    server.shutdown()


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: install Debian's chromium package (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield browser
        browser.close()


def page_url(site: str, page: Path) -> str:
    return urljoin(site, str(page.relative_to(ROOT).with_suffix(".html")))


def _off_site(url: str, site: str) -> bool:
    return not url.startswith(site) and not url.startswith(("data:", "blob:", "about:"))


def open_page(browser, url: str, expect_status: int = 200):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    origin = "{0.scheme}://{0.netloc}/".format(urlparse(url))
    # offline: a page that asks another site for anything (a CDN script, a font, widget code) fails
    page.on("request", lambda r: errors.append(f"off-site request: {r.url}") if _off_site(r.url, origin) else None)
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url} ({r.failure})"))
    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    page.on("response", lambda r: errors.append(f"HTTP {r.status}: {r.url}")
            if r.status >= 400 and not r.url.endswith("/favicon.ico") and r.url != url else None)
    page.on("console", lambda msg: errors.append(f"console: {msg.text}")
            if msg.type == "error" and not msg.text.startswith("Failed to load resource") else None)
    response = page.goto(url, wait_until="networkidle")
    assert response is not None and response.status == expect_status, f"{url}: HTTP {response and response.status}"
    return page, errors


def chapter_title(chapter: Path) -> str:
    return next(line[2:].strip() for line in chapter.read_text().splitlines() if line.startswith("# "))


def plain_quotes(text: str) -> str:
    """Undo Sphinx's smart quotes (doesn't -> doesn’t), so titles compare as written."""
    return text.translate(str.maketrans({"‘": "'", "’": "'", "“": '"', "”": '"'}))


@pytest.mark.parametrize("chapter", chapters(), ids=lambda p: p.stem)
def test_chapter_page(site, browser, chapter):
    page, errors = open_page(browser, page_url(site, chapter))
    source = chapter.read_text()
    assert chapter_title(chapter) in plain_quotes(page.title())

    # math: MathJax has typeset something and left no raw TeX delimiters behind
    page.wait_for_selector("mjx-container", state="attached", timeout=20_000)  # the first may sit in a collapsed block
    body_text = page.inner_text("main")
    assert "$$" not in body_text and "\\begin{" not in body_text

    # figures: every chapter that plots shows at least one image that loaded
    if "plt." in source:
        widths = page.eval_on_selector_all(".cell_output img", "imgs => imgs.map(i => i.naturalWidth)")
        assert widths and all(w > 0 for w in widths), f"images missing or broken: {widths}"
        # alt text for screen readers: written in the chapter, not the default (the image's file name)
        alts = page.eval_on_selector_all(".cell_output img", "imgs => imgs.map(i => i.alt)")
        missing = [alt for alt in alts if not alt.strip() or alt.endswith(".png")]
        assert not missing, f"{len(missing)} of {len(alts)} figures have no alt text: {missing[:3]}"

    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{chapter.stem}.png"), full_page=False)

    # progress bars: drawn as static HTML, no widget that needs JavaScript from a CDN
    assert page.locator("script[type='application/vnd.jupyter.widget-view+json']").count() == 0
    assert page.locator("script[type='application/vnd.jupyter.widget-state+json']").count() == 0

    # the .ipynb download is the reader's notebook: numbers written in, no MyST, a first cell that installs
    download = page.eval_on_selector_all("a[href$='.ipynb']", "links => links.map(a => a.href)")
    notebooks = [href for href in download if href.startswith(site)]
    assert notebooks, "no .ipynb download on the page"
    with urllib.request.urlopen(notebooks[0], timeout=10) as response:
        nb = json.load(response)
    text = "".join("".join(c["source"]) for c in nb["cells"])
    assert "{glue:text}" not in text and "```{" not in text and "myst_nb" not in text
    assert "%pip install" in "".join(nb["cells"][0]["source"])

    # exercises: solutions are collapsed, and open when the reader clicks
    solutions = page.locator(".solution.dropdown")
    assert solutions.count() >= 1
    first = solutions.first
    content = first.locator("section").first
    assert not content.is_visible()
    first.locator("button.toggle-button").click()
    content.wait_for(state="visible", timeout=5_000)
    assert not errors, errors
    page.close()


@pytest.mark.parametrize("page_file", toc_pages(), ids=lambda p: p.stem)
def test_internal_links_resolve(site, browser, page_file):
    page, errors = open_page(browser, page_url(site, page_file))
    hrefs = page.eval_on_selector_all("a[href]", "links => links.map(a => a.href)")
    page.close()
    broken = []
    for href in sorted(set(hrefs)):
        parsed = urlparse(href)
        if not href.startswith(site):
            continue  # external: not checked offline
        target = href.split("#")[0]
        try:
            urllib.request.urlopen(target, timeout=10).close()
        except urllib.error.URLError as err:
            broken.append(f"{parsed.path}: {err}")
    assert not broken, broken
    assert not errors, errors


def test_not_found_page(site, browser):
    """An unknown address gets the book's 404 page: self-contained, with links that lead back into the book."""
    page, errors = open_page(browser, urljoin(site, "book/no-such-chapter.html"), expect_status=404)
    assert "Page not found" in page.title()
    links = {a: page.get_attribute(f"a#{a}", "href") for a in ("home", "search")}
    page.close()
    for name, href in links.items():
        target = urljoin(site, href)
        assert target.startswith(site), f"{name} link leaves the site: {href}"
        with urllib.request.urlopen(target, timeout=10) as response:
            assert response.status == 200, f"{name} link {href}: HTTP {response.status}"
    assert not errors, errors
