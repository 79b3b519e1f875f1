"""report.html: the page's data (Q derived as the search did, pairs matched to children), its
escaping, and the tree browser driven in headless Chromium through Playwright.

The browser tests are skipped only where Playwright (``pip install -e .[dev]``) or a Chromium
binary (Debian's ``chromium``, installed by ``cluster/setup.sh``; or ``$ITOOL_CHROMIUM``) is
missing. ``ITOOL_UPDATE_SCREENSHOTS=1`` also writes the screenshot the README shows,
``tests/report/screenshots/tree_browser.png``; otherwise it goes to the test's tmp folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from itool_ray.mcts.config import MCTSConfig
from itool_ray.mcts.fake import FakeEngine, fake_outcome, make_fake_samples
from itool_ray.mcts.pairs import extract_pairs
from itool_ray.mcts.search import search
from itool_ray.mcts.step import Step
from itool_ray.report import write_report
from itool_ray.report_html import collect_trees, markdown_to_html

XSS_SCRIPT = "<script>window.__xss = 1</script>"
XSS_IMG = '</script><img src=x onerror="window.__xss = 2">'
XSS_PROMPT = "what is <script>window.__xss = 3</script> & <b>bold</b>?"
SCREENSHOT = Path(__file__).parent / "screenshots" / "tree_browser.png"


class XSSEngine(FakeEngine):
    """The fake policy, except that two of its calls come out as hostile step texts."""

    def expand(self, requests):
        out = []
        for steps in super().expand(requests):
            if steps is not None:
                steps = [
                    dataclasses.replace(
                        s,
                        text=s.text.replace("h(x=2)", f"h(x='{XSS_SCRIPT}')").replace(
                            "g(y=1)", f"g(y='{XSS_IMG}')"
                        ),
                    )
                    for s in steps
                ]
                assert all(isinstance(s, Step) for s in steps)
            out.append(steps)
        return out


def _jsonl(path: Path, rows) -> None:
    with open(path, "a") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


@pytest.fixture(scope="module")
def searched():
    """Real trees: the MCTS core on the fake engine, scored by the fake outcome."""
    samples = make_fake_samples(4, seed=3)
    samples[0] = dataclasses.replace(
        samples[0], messages=({"role": "user", "content": XSS_PROMPT},)
    )
    config = MCTSConfig(k=4, simulations=10, seed=0, max_depth=4)
    result = search(samples, XSSEngine(seed=1, p_text=0.2), config, reward_fn=fake_outcome)
    return samples, result.trees


@pytest.fixture(scope="module")
def run_dir(searched, tmp_path_factory) -> Path:
    """An iTool run folder as the tree manager and the pipeline leave it."""
    samples, trees = searched
    run = tmp_path_factory.mktemp("html") / "run"
    mcts = run / "iter1-mcts"
    mcts.mkdir(parents=True)
    for kept, (tree, sample) in enumerate(zip(trees, samples, strict=True)):
        pairs = extract_pairs(tree, sample)  # as TreeManager._emit writes them, keep_trees=3
        if kept < 3:
            _jsonl(mcts / "trees_finished.jsonl", [tree.to_dict()])
        _jsonl(mcts / "pairs.jsonl", [p.to_dict() for p in pairs])
        _jsonl(
            mcts / "finished.jsonl",
            [
                {
                    "tree_id": tree.tree_id,
                    "pairs": len(pairs),
                    "nodes": len(tree),
                    "simulations": tree.simulations,
                }
            ],
        )
    _jsonl(mcts / "progress.jsonl", [{"t": 0.0, "expansions": 0}, {"t": 1.0, "expansions": 12}])
    (mcts / "DONE").write_text(json.dumps({"seconds": 1.0}))
    table = {
        "base": {"version": 0, "synth": {"accuracy": 0.25, "n": 8}},
        "iter1": {"version": 2, "synth": {"accuracy": 0.5, "n": 8}, "pairs": 3},
    }
    (run / "table.json").write_text(json.dumps(table))
    write_report(run)
    return run


@pytest.fixture(scope="module")
def empty_run(tmp_path_factory) -> Path:
    """A run stopped before any MCTS stage: tables only, no trees."""
    run = tmp_path_factory.mktemp("html") / "empty"
    run.mkdir()
    (run / "table.json").write_text(
        json.dumps({"base": {"version": 0, "synth": {"accuracy": 0.1, "n": 4}}})
    )
    write_report(run)
    return run


# ---- the page's data, no browser ------------------------------------------------------------
def test_tree_data_is_the_search_state(searched, run_dir):
    samples, trees = searched
    got = collect_trees(run_dir)
    assert got.stages == ["iter1"] and not got.skipped
    assert [t["tree_id"] for t in got.trees] == [t.tree_id for t in trees[:3]]
    pairs_seen = 0
    for page, tree, sample in zip(got.trees, trees, samples, strict=False):
        nd = page["nodes"]
        n = len(tree)
        assert nd["Q"] == [tree.q(x) for x in range(n)]  # bit-identical: derived as searched
        assert nd["N"] == [tree.visits(x) for x in range(n)]
        assert nd["O"] == [tree.outcome(x) for x in range(n)] and nd["O"][1] is not None
        assert nd["C"] == [tree.confidence(x) for x in range(n)]
        assert nd["R"] == [tree.reward(x) for x in range(n)]
        pairs = extract_pairs(tree, sample)
        assert len(page["pairs"]) == len(pairs)
        for p, want in zip(page["pairs"], pairs, strict=True):
            assert p["node"] == want.node_id
            assert tree.parent(p["chosen"]) == want.node_id == tree.parent(p["rejected"])
            assert tree.text(p["chosen"]) == want.chosen and tree.q(p["chosen"]) == want.chosen_q
            assert tree.text(p["rejected"]) == want.rejected
            assert tree.q(p["rejected"]) == want.rejected_q
        pairs_seen += len(pairs)
    assert pairs_seen > 0
    assert got.trees[0]["prompt"] == XSS_PROMPT
    texts = [x for t in got.trees for x in t["nodes"]["text"]]
    assert any(XSS_SCRIPT in x for x in texts) and any(XSS_IMG in x for x in texts)


def test_page_is_self_contained_and_escaped(run_dir):
    page = (run_dir / "report" / "report.html").read_text()
    assert page.count("<script") == 2  # the embedded JSON and the page's own script
    assert "window.__xss" in page and "<script>window.__xss" not in page
    assert "<img src=x" not in page and "<b>bold" not in page
    refs = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert refs and all(r.startswith(("data:image/png;base64,", "#")) for r in refs)
    assert "http://" not in page and "https://" not in page
    assert "default-src 'none'" in page
    assert page.count("data:image/png;base64,") == 5  # accuracy, reward, pairs, throughput, tree


def test_unreadable_tree_is_listed_not_fatal(tmp_path):
    run = tmp_path / "rollout"
    run.mkdir()
    old = {
        "tree_id": "<old>",
        "parent": [-1, 0],
        "visits": [2, 1],
        "w": [0.5, 0.5],
        "text": ["", "x"],
    }
    _jsonl(run / "trees_finished.jsonl", [old])  # written before the format was versioned
    (run / "pairs.jsonl").write_text("")
    write_report(run)
    page = (run / "report" / "report.html").read_text()
    assert 'id="no-trees"' in page and "trees not shown (1)" in page
    assert "rollout: tree &lt;old&gt;: tree_from_dict: unknown format" in page


def test_markdown_tables_escaped():
    out = markdown_to_html("# title\n\n## A <b>\n\n| a | b |\n|---|---|\n| `x<y` | 2 & 3 |\n")
    assert "title" not in out and "<h2>A &lt;b&gt;</h2>" in out
    assert "<th>a</th><th>b</th>" in out and "<td><code>x&lt;y</code></td><td>2 &amp; 3</td>" in out


# ---- the browser ----------------------------------------------------------------------------
def _chromium() -> str | None:
    for c in (os.environ.get("ITOOL_CHROMIUM"), "/usr/bin/chromium"):
        if c and os.access(c, os.X_OK):
            return c
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if found := shutil.which(name):
            return found
    return None


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    exe = _chromium()
    if exe is None:
        pytest.skip("no Chromium binary: apt-get install chromium (cluster/setup.sh does it)")
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=exe,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield b
        b.close()


def _open(browser, path: Path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.resolve().as_uri())
    page.wait_for_load_state("load")
    return page, errors, requests


def test_tree_browser_in_chromium(browser, run_dir, tmp_path):
    page, errors, requests = _open(browser, run_dir / "report" / "report.html")
    try:
        # the tables and the plots
        assert page.locator("#tables table").count() >= 2
        imgs = page.locator("#plots img")
        assert imgs.count() == 5
        assert all(imgs.nth(i).evaluate("i => i.naturalWidth") > 100 for i in range(5))
        # one entry per saved tree; the first is shown with the root expanded
        assert page.locator("#sample-list button").count() == 3
        view = page.locator("#tree-view")
        root = view.locator('li.node[data-node="0"]')
        depth1 = root.locator(":scope > ul.children > li.node")
        assert depth1.count() >= 2 and depth1.first.is_visible()
        # a click on a node with children expands it: its children appear; a second collapses
        nid = next(
            depth1.nth(i).get_attribute("data-node")
            for i in range(depth1.count())
            if depth1.nth(i).locator(":scope > .row .toggle").is_enabled()
        )
        node = view.locator(f'li.node[data-node="{nid}"]')
        assert node.locator(":scope > ul.children").count() == 0  # built on first expand
        node.locator(":scope > .row").click()
        kids = node.locator(":scope > ul.children > li.node")
        assert kids.count() >= 1 and kids.first.is_visible()
        assert node.locator(":scope > .row .toggle").get_attribute("aria-expanded") == "true"
        node.locator(":scope > .row").click()
        assert not kids.first.is_visible()
        node.locator(":scope > .row").click()
        # each node shows N, Q, prior, R = O + C, the version; pairs with chosen/rejected marked
        row = kids.first.locator(":scope > .row").inner_text()
        for label in ("N ", "Q ", "prior ", "R ", "= O ", "+ C ", "v "):
            assert label in row, (label, row)
        assert view.locator(".pair").count() >= 1
        assert view.locator(".pair .mark.chosen").first.is_visible()
        assert view.locator(".pair .mark.rejected").first.is_visible()
        assert view.locator(".row .mark.chosen").first.is_visible()  # the child itself
        assert view.locator(".row .mark.rejected").first.is_visible()
        # the hostile texts are text, and none of them ran
        view.get_by_role("button", name="Expand all").click()
        text = view.inner_text()
        assert XSS_SCRIPT in text and XSS_IMG in text and XSS_PROMPT in text
        assert page.evaluate("typeof window.__xss") == "undefined"
        assert page.locator("#trees img").count() == 0
        assert page.locator("script").count() == 2
        shot = tmp_path / "tree_browser_full.png"
        page.screenshot(path=str(shot), full_page=True)
        # another sample
        page.locator("#sample-list button").nth(1).click()
        title = view.locator("h3").inner_text()
        assert title == page.locator("#sample-list button .tid").nth(1).inner_text()
        assert page.locator("#sample-list button.selected").count() == 1
        # filter the list
        page.fill("#filter", title)
        assert page.locator("#sample-list li:not([hidden])").count() == 1
        page.fill("#filter", "")
        # the screenshot the README shows: first sample, root and one branch open
        page.locator("#sample-list button").first.click()
        view.locator('li.node[data-node="0"] > ul.children > li.node > .row').nth(
            int(nid) - 1
        ).click()
        out = SCREENSHOT if os.environ.get("ITOOL_UPDATE_SCREENSHOTS") else tmp_path / "tb.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        page.locator("#trees").screenshot(path=str(out))
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
        assert errors == []
        assert all(u.startswith(("file:", "data:")) for u in requests), requests
    finally:
        page.close()


def test_page_without_trees_in_chromium(browser, empty_run):
    page, errors, requests = _open(browser, empty_run / "report" / "report.html")
    try:
        assert page.locator("#no-trees").is_visible()
        assert "No saved search trees" in page.locator("#no-trees").inner_text()
        assert page.locator("#tables table").count() == 1
        assert errors == []
    finally:
        page.close()
