"""The documentation site (docs/, mkdocs.yml): every Python block of every page runs, the site
builds in strict mode (no broken link, no missing reference, no docstring griffe cannot read), and
a headless Chromium shows the built site with its navigation, a working search and the equations
rendered by KaTeX.

Each page's blocks run in order in one fresh namespace (as a reader pasting a page into one
session would), in a temporary folder, with the data of ``TINYGRAD_FREE_DATA`` (``../shared/data``
by default, see conftest.py). A block may skip its page with ``pytest.importorskip``.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
ARTIFACTS = ROOT / "build" / "docs-artifacts"
FENCE = re.compile(r"^```python\n(.*?)^```", flags=re.S | re.M)


def pages():
    return sorted(p for p in DOCS.rglob("*.md") if "vendor" not in p.relative_to(DOCS).parts)


def python_blocks(page: Path) -> list[str]:
    return FENCE.findall(page.read_text())


def _name(page: Path) -> str:
    return page.relative_to(DOCS).as_posix()


PAGES_WITH_CODE = [p for p in pages() if python_blocks(p)]


def test_the_docs_have_pages_with_python_to_run():
    assert len(PAGES_WITH_CODE) >= 8, [_name(p) for p in PAGES_WITH_CODE]


@pytest.mark.parametrize("page", pages(), ids=_name)
def test_every_python_block_is_one_the_test_finds(page):
    """A ```python fence indented (in a list or an admonition) would not be run by this file's
    pattern: keep python blocks at the left margin."""
    text = page.read_text()
    indented = re.findall(r"^[ \t]+```python", text, flags=re.M)
    assert not indented, f"{_name(page)}: a python block is indented; the docs test runs only unindented ones"
    assert text.count("```python") == len(python_blocks(page)), f"{_name(page)}: an unclosed python block"


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=_name)
def test_every_python_block_of_the_page_runs_as_written(page, tmp_path, monkeypatch):
    from tinygrad_free.nn import classes
    from tinygrad_free.optim import OPTIMIZERS

    monkeypatch.chdir(tmp_path)  # the examples write model files
    # The examples register optimizers and layer classes: keep them out of the other tests.
    saved = [(r, r.snapshot()) for r in (OPTIMIZERS, classes.SHORT_NAMES)]
    known = dict(classes._CLASSES)
    namespace = {"__name__": f"docs.{page.stem}".replace("-", "_")}
    try:
        for i, block in enumerate(python_blocks(page)):
            try:
                exec(compile(block, f"{_name(page)} python block {i}", "exec"), namespace)
            except Exception as e:  # name the block: the traceback alone points into exec
                pytest.fail(f"{_name(page)} python block {i} failed: {type(e).__name__}: {e}\n--- block ---\n{block}")
    finally:
        for registry, snapshot in saved:
            registry.restore(snapshot)
        classes._CLASSES.clear()
        classes._CLASSES.update(known)


def test_every_results_file_is_on_a_results_page():
    """The results pages include the benchmarks' and the report's files as they are written: a new
    results file must get a place on the site."""
    included = set()
    for page in (DOCS / "results").glob("*.md"):
        included |= set(re.findall(r'--8<-- "([^"]+)"', page.read_text()))
    made = {p.relative_to(ROOT).as_posix() for p in (ROOT / "benchmarks" / "results").glob("*.md")}
    made.add("report/report.md")
    assert made <= included, f"results files on no docs/results page: {sorted(made - included)}"


# --- the site ----------------------------------------------------------------------------------


def _have_mkdocs() -> str | None:
    for module, package in (("mkdocs", "mkdocs"), ("material", "mkdocs-material"), ("mkdocstrings", "mkdocstrings")):
        try:
            __import__(module)
        except ImportError:
            return f"{package} is not installed (pip install -e '.[docs]')"
    return None


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site built by ``mkdocs build --strict`` (what scripts/docs.sh build runs), once."""
    missing = _have_mkdocs()
    if missing:
        pytest.skip(missing)
    out = tmp_path_factory.mktemp("site")
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    if run.returncode != 0:
        log = "\n".join(line for line in (run.stdout + run.stderr).splitlines() if not line.startswith("INFO"))
        pytest.fail(f"mkdocs build --strict failed:\n{log}")
    return out


def test_the_site_builds_strictly_with_every_page(site):
    for page in pages():
        rel = _name(page)
        if rel == "index.md":
            built = site / "index.html"
        elif rel.endswith("/index.md"):
            built = site / rel[: -len("index.md")] / "index.html"
        else:
            built = site / rel[: -len(".md")] / "index.html"
        assert built.is_file(), f"{rel} was not built ({built.relative_to(site)} missing)"
    assert (site / "search" / "search_index.json").is_file()


def test_the_api_pages_render_the_docstrings_equations(site):
    html = (site / "api" / "optimizers" / "index.html").read_text()
    assert 'class="arithmatex"' in html and "\\hat m" in html, "Adam's equations are not on the optimizers page"
    html = (site / "api" / "layers" / "index.html").read_text()
    assert html.count('class="arithmatex"') >= 10


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # the test's output stays the test's
        pass


@pytest.fixture
def served(site):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _browser():
    """(chromium, chromedriver) paths, or skip naming what is missing."""
    chromium = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip(
            "Chromium or its driver is not installed (Debian: apt-get install chromium chromium-driver; "
            "scripts/test.sh installs them when it runs as root)"
        )
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the test extra)")
    return webdriver, chromium, driver


def test_a_browser_shows_navigation_search_and_rendered_equations(served, tmp_path):
    webdriver, chromium, driver_path = _browser()
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1280,1000",
    ):
        options.add_argument(flag)
    browser = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    try:
        wait = WebDriverWait(browser, 30)
        browser.get(served + "/api/optimizers/")
        # navigation: the site's sections in the sidebar, with this page among them
        nav = browser.find_elements(By.CSS_SELECTOR, "nav.md-nav--primary a.md-nav__link")
        titles = {a.get_attribute("textContent").strip() for a in nav}
        assert {"Get started", "Concepts", "Layers", "Optimizers"} <= titles, sorted(titles)
        # equations: every arithmatex element rendered by KaTeX, none with an error
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, ".arithmatex .katex"))
        math = browser.find_elements(By.CSS_SELECTOR, ".arithmatex")
        rendered = browser.find_elements(By.CSS_SELECTOR, ".arithmatex .katex")
        assert len(math) >= 10 and len(rendered) == len(math), (len(math), len(rendered))
        assert not browser.find_elements(By.CSS_SELECTOR, ".katex-error")
        adam = browser.find_element(By.ID, "tinygrad_free.optim.Adam")
        browser.execute_script("arguments[0].scrollIntoView()", adam)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(ARTIFACTS / "screenshot.png"))
        # search: the box is there and finds a layer from the API reference
        box = browser.find_element(By.CSS_SELECTOR, "input.md-search__input")
        box.click()
        box.send_keys("BatchNorm")

        # The list is rebuilt as each key arrives: a result read while it is replaced goes stale,
        # so the wait reads them again until one names BatchNorm (or times out, failing).
        def found(b):
            items = b.find_elements(By.CSS_SELECTOR, ".md-search-result__item")
            return any("BatchNorm" in r.get_attribute("textContent") for r in items)

        WebDriverWait(browser, 30, ignored_exceptions=(StaleElementReferenceException,)).until(found)
        assert browser.save_screenshot(str(ARTIFACTS / "search.png"))
    finally:
        browser.quit()


# --- the docstrings' rST read as Markdown (docs/griffe_rst.py) ------------------------------------


@pytest.fixture
def rst_to_markdown():
    pytest.importorskip("griffe", reason="griffe (mkdocstrings' Python handler) is not installed")
    sys.path.insert(0, str(DOCS))
    try:
        from griffe_rst import rst_to_markdown

        yield rst_to_markdown
    finally:
        sys.path.remove(str(DOCS))


def test_rst_roles_become_code_the_tilde_keeping_the_last_name(rst_to_markdown):
    text = "See :class:`~tinygrad_free.nn.Dense`, :func:`load_dataset` and :mod:`.sources`."
    assert rst_to_markdown(text) == "See `Dense`, `load_dataset` and `.sources`."


def test_a_literal_block_marker_becomes_a_colon_or_nothing(rst_to_markdown):
    text = "A loop gets it::\n\n    with x:\n        pass\n\n::\n\n    y = 1"
    assert rst_to_markdown(text) == "A loop gets it:\n\n    with x:\n        pass\n\n\n\n    y = 1"


def test_simple_tables_become_markdown_tables_with_continued_rows_joined(rst_to_markdown):
    with_header = "====  =====\nname  value\n====  =====\na     1\n      more\nb     2\n====  =====\nafter"
    assert rst_to_markdown(with_header).split("\n") == [
        "| name | value |",
        "|---|---|",
        "| a | 1 more |",
        "| b | 2 |",
        "after",
    ]
    without_header = "==  ==\na   1\n==  ==\n\ntext"
    assert rst_to_markdown(without_header).split("\n") == ["|  |  |", "|---|---|", "| a | 1 |", "", "text"]
