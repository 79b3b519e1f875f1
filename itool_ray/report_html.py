"""``report.html``: the run report as one self-contained page, with a browser for the saved trees.

Written beside ``report.md`` by :func:`itool_ray.report.write_report`. The page holds

* the report's tables (converted from the same Markdown ``report.md`` holds, so both agree);
* the PNG plots, embedded as ``data:`` URIs;
* a browser for every tree saved in the run's MCTS stage folders (``trees_finished.jsonl``;
  ``iterN-mcts/`` of an iTool run, or the rollout folder itself): pick a sample, expand and
  collapse nodes; each node shows its step text, N, Q, prior, R = O + C (R alone when the
  terms are unknown), policy version and terminal flag, and the pairs of ``pairs.jsonl``
  taken at it, with the chosen and rejected child marked.

Q, V and depth are derived here in Python (:func:`itool_ray.mcts.checkpoint.tree_from_dict`
with the stored gamma, so they are the values the search used) and embedded as JSON. The page
loads nothing: plain JavaScript and CSS inline, and a Content-Security-Policy that allows no
network access and only the page's own script (by hash). Every text the page shows (step
texts and prompts are model or data output) is set through ``textContent`` or escaped with
:func:`html.escape`; the embedded JSON has ``<``, ``>`` and ``&`` escaped so that no text can
close its ``<script>`` element.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from itool_ray.mcts.checkpoint import tree_from_dict
from itool_ray.mcts.config import MCTSConfig

_ITER = re.compile(r"^iter(\d+)-mcts$")


@dataclass
class TreeSet:
    """The saved trees of a run, ready to embed, and the ones that could not be read."""

    trees: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    stages: list[str] = field(default_factory=list)  # MCTS stages looked at


def stage_folders(run_dir: str | Path) -> list[tuple[str, Path]]:
    """(name, folder) of the run's MCTS stages, named as ``report.py`` names them:
    ``iterN`` for ``iterN-mcts/``; a rollout folder is its own single stage."""
    run = Path(run_dir)
    iters = sorted(
        (int(m.group(1)), d) for d in run.iterdir() if d.is_dir() and (m := _ITER.match(d.name))
    )
    if iters:
        return [(f"iter{i}", d) for i, d in iters]
    if (run / "pairs.jsonl").exists() or (run / "trees_finished.jsonl").exists():
        return [(run.name, run)]
    return []


def _records(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file; unreadable lines (a torn last line) are skipped."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(errors="replace").split("\n"):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def _num(v: Any) -> float | None:
    """A JSON-safe number: None for None, NaN and infinities."""
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _prompt(pair: dict[str, Any] | None) -> str | None:
    """The last user message of a pair's prompt (the sample's query), if it has one."""
    msgs = (pair or {}).get("prompt_messages") or []
    users = [m.get("content") for m in msgs if isinstance(m, dict) and m.get("role") == "user"]
    return str(users[-1]) if users and users[-1] is not None else None


def tree_data(d: dict[str, Any], pairs: list[dict[str, Any]], stage: str) -> dict[str, Any]:
    """One saved tree (``tree_to_dict``) with its pairs, as the page's JSON.

    Raises ValueError (or KeyError / TypeError) for a tree that does not load.
    """
    gamma = float(d["gamma"]) if "gamma" in d else MCTSConfig().gamma  # format checked first
    tree = tree_from_dict(d, MCTSConfig(gamma=gamma))
    n = len(tree)
    ids = range(n)
    nodes = {
        "parent": [tree.parent(x) for x in ids],
        "text": [tree.text(x) for x in ids],
        "N": [tree.visits(x) for x in ids],
        "Q": [_num(tree.q(x)) for x in ids],
        "V": [_num(tree.value(x)) for x in ids],
        "prior": [_num(tree.prior(x)) for x in ids],
        "R": [_num(tree.reward(x)) for x in ids],
        "O": [_num(tree.outcome(x)) for x in ids],
        "C": [_num(tree.confidence(x)) for x in ids],
        "version": [tree.version(x) for x in ids],
        "terminal": [tree.terminal(x) for x in ids],
        "depth": [tree.depth(x) for x in ids],
    }
    out_pairs = []
    for p in pairs:
        x = int(p.get("node_id", -1))
        if not 0 <= x < n:
            continue
        kids = list(tree.children(x))
        out_pairs.append(
            {
                "node": x,
                "chosen": _match(tree, kids, p.get("chosen"), p.get("chosen_q")),
                "rejected": _match(tree, kids, p.get("rejected"), p.get("rejected_q")),
                "chosen_text": str(p.get("chosen", "")),
                "rejected_text": str(p.get("rejected", "")),
                "chosen_q": _num(p.get("chosen_q")),
                "rejected_q": _num(p.get("rejected_q")),
            }
        )
    return {
        "stage": stage,
        "tree_id": str(tree.tree_id),
        "policy_version": tree.policy_version,
        "simulations": tree.simulations,
        "expansions": tree.expansions,
        "gamma": tree.config.gamma,
        "prompt": _prompt(pairs[0] if pairs else None),
        "nodes": nodes,
        "pairs": out_pairs,
    }


def _match(tree, kids: list[int], text: Any, q: Any) -> int | None:
    """The child of a pair's node with the pair's step text (Q closest to the pair's on a
    tie); None when no child has that text."""
    same = [c for c in kids if tree.text(c) == text]
    if not same:
        return None
    qv = _num(q)
    return min(same, key=lambda c: abs(tree.q(c) - qv)) if qv is not None else same[0]


def collect_trees(run_dir: str | Path) -> TreeSet:
    """Every tree saved in the run's MCTS stage folders, with the pairs taken in it."""
    out = TreeSet()
    for stage, folder in stage_folders(run_dir):
        out.stages.append(stage)
        by_tree: dict[str, list[dict[str, Any]]] = {}
        for p in _records(folder / "pairs.jsonl"):
            by_tree.setdefault(str(p.get("tree_id")), []).append(p)
        for i, d in enumerate(_records(folder / "trees_finished.jsonl")):
            tid = str(d.get("tree_id", f"line {i + 1}"))
            try:
                out.trees.append(tree_data(d, by_tree.get(tid, []), stage))
            except KeyError as e:
                out.skipped.append(f"{stage}: tree {tid}: missing field {e}")
            except (ValueError, TypeError, IndexError) as e:
                out.skipped.append(f"{stage}: tree {tid}: {e}")
    return out


# ---- the page -------------------------------------------------------------------------------
def markdown_to_html(md: str) -> str:
    """The subset of Markdown that ``report.markdown`` writes (headings, tables, images,
    paragraphs), every text escaped; the title and the images are left out (the page has its
    own title and embeds the images itself)."""
    out: list[str] = []
    rows: list[list[str]] = []

    def cells(line: str) -> list[str]:
        return [c.strip() for c in line.strip().strip("|").split("|")]

    def inline(s: str) -> str:
        parts = s.split("`")  # `code` spans, the rest escaped as plain text
        return "".join(
            f"<code>{html.escape(t)}</code>" if i % 2 else html.escape(t)
            for i, t in enumerate(parts)
        )

    def flush() -> None:
        if not rows:
            return
        head, body = rows[0], [r for r in rows[1:] if not all(set(c) <= set("-: ") for c in r)]
        out.append("<table><thead><tr>" + "".join(f"<th>{inline(c)}</th>" for c in head))
        out.append("</tr></thead><tbody>")
        for r in body:
            out.append("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>")
        out.append("</tbody></table>")
        rows.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            rows.append(cells(line))
            continue
        flush()
        if not line.strip() or line.startswith("!["):
            continue
        m = re.match(r"^(#{1,6}) (.*)$", line)
        if m and len(m.group(1)) == 1:  # the report's title: the page has its own
            continue
        if m:
            level = len(m.group(1))
            out.append(f"<h{level}>{inline(m.group(2))}</h{level}>")
        else:
            out.append(f"<p>{inline(line)}</p>")
    flush()
    return "\n".join(out)


def _json_for_script(obj: Any) -> str:
    """JSON that is safe inside ``<script type="application/json">``: no ``<``, ``>``, ``&``
    (so no ``</script>`` or ``<!--``), no NaN."""
    text = json.dumps(obj, allow_nan=False, ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(ch, esc)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def render(title: str, md: str, images: list[tuple[str, bytes]], trees: TreeSet) -> str:
    """The whole page as a string (``images``: (name, PNG bytes))."""
    data = {"trees": trees.trees, "skipped": trees.skipped, "stages": trees.stages}
    figures = "\n".join(
        f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,'
        f'{base64.b64encode(png).decode()}"><figcaption>{html.escape(name)}</figcaption></figure>'
        for name, png in images
    )
    if trees.trees:
        browser = (
            '<div class="browser"><aside><input id="filter" type="search" '
            'placeholder="filter samples" aria-label="filter samples">'
            '<ul id="sample-list"></ul></aside><div id="tree-view"></div></div>'
        )
    else:
        where = ", ".join(trees.stages) or "no MCTS stage folder found"
        browser = (
            '<p id="no-trees" class="empty">No saved search trees in this run '
            f"({html.escape(where)}): the MCTS stages keep the first "
            "<code>manager.keep_trees</code> finished trees in "
            "<code>trees_finished.jsonl</code>.</p>"
        )
    if trees.skipped:
        items = "".join(f"<li>{html.escape(s)}</li>" for s in trees.skipped)
        browser += f'<details class="skipped"><summary>trees not shown ({len(trees.skipped)})'
        browser += f"</summary><ul>{items}</ul></details>"
    script_hash = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
    csp = (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{script_hash}'; base-uri 'none'; form-action 'none'"
    )
    return _PAGE.format(
        csp=csp,
        title=html.escape(title),
        css=_CSS,
        tables=markdown_to_html(md) or "<p>No tables: the run left no results yet.</p>",
        figures=figures or "<p>No plots.</p>",
        browser=browser,
        data=_json_for_script(data),
        script=_SCRIPT,
    )


def write_html(run_dir: str | Path, out_dir: str | Path, md: str, images: list[str]) -> Path:
    """Write ``out_dir/report.html`` for the run: ``md`` is report.md's text without its images
    (``report.markdown(data, [])``), ``images`` the PNG file names in ``out_dir`` (embedded)."""
    out = Path(out_dir)
    pngs = [(Path(n).stem, (out / n).read_bytes()) for n in images if (out / n).is_file()]
    page = render(f"itool-ray run report: {run_dir}", md, pngs, collect_trees(run_dir))
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<header><h1>{title}</h1>
<nav><a href="#tables">Tables</a> <a href="#plots">Plots</a> <a href="#trees">Search trees</a></nav>
</header>
<section id="tables">{tables}</section>
<section id="plots"><h2>Plots</h2>{figures}</section>
<section id="trees"><h2>Search trees</h2>{browser}</section>
<script type="application/json" id="report-data">{data}</script>
<script>{script}</script>
</body>
</html>
"""

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 0 1.5em 3em; color: #222; }
h1 { font-size: 1.4em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: .5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 2px 8px; text-align: left; }
th { background: #f3f3f3; }
figure { display: inline-block; margin: 0 1em 1em 0; vertical-align: top; }
figure img { max-width: min(100%, 640px); border: 1px solid #eee; }
figcaption { color: #666; font-size: .9em; }
.empty { color: #666; font-style: italic; }
.browser { display: flex; gap: 1em; align-items: flex-start; }
.browser aside { flex: 0 0 260px; position: sticky; top: 0; max-height: 95vh; overflow: auto; }
#filter { width: 100%; box-sizing: border-box; margin-bottom: .4em; }
#sample-list { list-style: none; padding: 0; margin: 0; }
#sample-list button { width: 100%; text-align: left; border: 1px solid #ddd; background: #fafafa;
  padding: 4px 6px; margin-bottom: 3px; cursor: pointer; border-radius: 3px; }
#sample-list button.selected { background: #dde9ff; border-color: #7aa2e8; }
#sample-list .sub { display: block; color: #666; font-size: .85em; }
#tree-view { flex: 1; min-width: 0; }
.meta { display: flex; flex-wrap: wrap; gap: .3em 1.2em; color: #444; margin: .3em 0 .6em; }
.prompt { white-space: pre-wrap; background: #f6f6f6; padding: 6px; border-radius: 3px; }
.toolbar button { margin-right: .5em; }
.legend { color: #555; font-size: .9em; margin: .4em 0; }
ul.tree, ul.children { list-style: none; margin: 0; padding-left: 1.4em; }
ul.tree { padding-left: 0; }
.row { display: flex; flex-wrap: wrap; align-items: baseline; gap: .2em .6em; padding: 2px 4px;
  border-left: 5px solid #ccc; margin: 2px 0; cursor: pointer; border-radius: 2px; }
.row:hover { background: #f4f7ff; }
.toggle { width: 1.6em; border: none; background: none; cursor: pointer; font-size: .9em; }
.toggle:disabled { cursor: default; color: #aaa; }
.nid { color: #888; font-size: .85em; }
.text { font-family: ui-monospace, monospace; white-space: pre-wrap; word-break: break-word;
  background: #f7f7f7; padding: 0 3px; }
.text.none { font-style: italic; color: #777; font-family: inherit; }
.stat { font-size: .85em; color: #333; white-space: nowrap; }
.stat b { font-weight: 600; color: #555; }
.term { font-size: .8em; background: #444; color: #fff; padding: 0 4px; border-radius: 2px; }
.mark { font-size: .8em; font-weight: 600; padding: 0 5px; border-radius: 2px; color: #fff; }
.mark.chosen { background: #2e7d32; } .mark.rejected { background: #c62828; }
.pairs { margin: 0 0 4px 2.2em; font-size: .88em; }
.pair { border: 1px dashed #bbb; padding: 2px 6px; margin: 2px 0; border-radius: 3px; }
.pair .side { display: block; }
.skipped { margin-top: 1em; color: #555; }
"""

# Plain JavaScript; text only ever reaches the page through textContent / createTextNode.
_SCRIPT = r"""
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const list = document.getElementById("sample-list");
  const view = document.getElementById("tree-view");
  if (!list || !view || !data.trees.length) return;

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function fmt(x, d) { return x === null || x === undefined ? "-" : Number(x).toFixed(d === undefined ? 3 : d); }
  function stat(label, value) {
    const s = el("span", "stat");
    s.appendChild(el("b", null, label + " "));
    s.appendChild(document.createTextNode(value));
    return s;
  }
  function oneLine(t, n) {
    const s = String(t).replace(/\s+/g, " ").trim();
    return s.length > n ? s.slice(0, n - 1) + "\u2026" : s;
  }

  // the sample list
  const buttons = [];
  data.trees.forEach(function (t, i) {
    const li = el("li");
    const b = el("button", null);
    b.type = "button";
    b.dataset.index = String(i);
    b.appendChild(el("span", "tid", t.tree_id));
    b.appendChild(el("span", "sub", t.stage + " \u00b7 " + t.nodes.parent.length + " nodes \u00b7 " +
      t.pairs.length + " pairs"));
    b.addEventListener("click", function () { show(i); });
    li.appendChild(b);
    list.appendChild(li);
    buttons.push(b);
  });
  document.getElementById("filter").addEventListener("input", function (ev) {
    const q = ev.target.value.toLowerCase();
    buttons.forEach(function (b, i) {
      const t = data.trees[i];
      const hit = !q || (t.tree_id + " " + t.stage + " " + (t.prompt || "")).toLowerCase().includes(q);
      b.parentElement.hidden = !hit;
    });
  });

  function show(index) {
    buttons.forEach(function (b, i) { b.classList.toggle("selected", i === index); });
    view.replaceChildren(renderTree(data.trees[index]));
  }

  function renderTree(t) {
    const nd = t.nodes, n = nd.parent.length;
    const kids = Array.from({ length: n }, function () { return []; });
    for (let x = 1; x < n; x++) kids[nd.parent[x]].push(x);
    const pairsAt = Array.from({ length: n }, function () { return []; });
    const mark = {};  // child id -> ["chosen" | "rejected", ...]
    t.pairs.forEach(function (p) {
      pairsAt[p.node].push(p);
      [["chosen", p.chosen], ["rejected", p.rejected]].forEach(function (kv) {
        if (kv[1] !== null) (mark[kv[1]] = mark[kv[1]] || []).push(kv[0]);
      });
    });
    let lo = Infinity, hi = -Infinity;
    for (let x = 1; x < n; x++) {
      if (nd.Q[x] !== null) { lo = Math.min(lo, nd.Q[x]); hi = Math.max(hi, nd.Q[x]); }
    }
    function colour(x) {
      const q = nd.Q[x];
      if (x === 0 || q === null) return "#bbb";
      const f = hi > lo ? (q - lo) / (hi - lo) : 0.5;
      return "hsl(" + Math.round(120 * f) + ", 65%, 45%)";
    }

    const box = el("div", "tree-box");
    box.appendChild(el("h3", null, t.tree_id));
    const meta = el("div", "meta");
    meta.appendChild(stat("stage", t.stage));
    meta.appendChild(stat("policy version", String(t.policy_version)));
    meta.appendChild(stat("simulations", String(t.simulations)));
    meta.appendChild(stat("expansions", String(t.expansions)));
    meta.appendChild(stat("nodes", String(n)));
    meta.appendChild(stat("pairs", String(t.pairs.length)));
    meta.appendChild(stat("gamma", String(t.gamma)));
    box.appendChild(meta);
    if (t.prompt) box.appendChild(el("div", "prompt", t.prompt));
    const bar = el("div", "toolbar");
    const all = el("button", null, "Expand all"), none = el("button", null, "Collapse all");
    all.type = none.type = "button";
    bar.appendChild(all);
    bar.appendChild(none);
    box.appendChild(bar);
    box.appendChild(el("div", "legend", "Left border: Q (red = lowest, green = highest in this tree). " +
      "R = O + C: outcome and self-evaluation terms of the state's reward; V: mean value below the root. " +
      "Click a node to expand or collapse it."));

    const items = [];
    function nodeItem(x) {
      const li = el("li", "node");
      li.dataset.node = String(x);
      const row = el("div", "row");
      row.style.borderLeftColor = colour(x);
      const tog = el("button", "toggle", kids[x].length ? "\u25b8" : "\u2022");
      tog.type = "button";
      tog.disabled = !kids[x].length;
      tog.setAttribute("aria-expanded", "false");
      tog.setAttribute("aria-label", kids[x].length ? "expand node " + x : "leaf");
      row.appendChild(tog);
      row.appendChild(el("span", "nid", "#" + x));
      (mark[x] || []).forEach(function (m) { row.appendChild(el("span", "mark " + m, m)); });
      const txt = nd.text[x];
      if (txt) row.appendChild(el("span", "text", txt));
      else row.appendChild(el("span", "text none", x === 0 ? "(root)" : "(empty step)"));
      row.appendChild(stat("N", String(nd.N[x])));
      if (x === 0) row.appendChild(stat("V", fmt(nd.V[x])));
      else row.appendChild(stat("Q", fmt(nd.Q[x])));
      if (x > 0) row.appendChild(stat("prior", fmt(nd.prior[x])));
      const o = nd.O[x], c = nd.C[x], r = nd.R[x];
      if (o !== null && c !== null) {
        const sum = Math.abs(o + c - r) < 1e-9;
        row.appendChild(stat("R", fmt(r) + (sum ? " = O " : " from O ") + fmt(o) + (sum ? " + C " : ", C ") + fmt(c) + (sum ? "" : " (weighted)")));
      } else {
        row.appendChild(stat("R", fmt(r)));
      }
      row.appendChild(stat("v", String(nd.version[x])));
      if (nd.terminal[x]) row.appendChild(el("span", "term", "terminal"));
      li.appendChild(row);
      if (pairsAt[x].length) {
        const pb = el("div", "pairs");
        pairsAt[x].forEach(function (p) {
          const d = el("div", "pair");
          d.appendChild(el("span", null, "pair taken at #" + x + ":"));
          [["chosen", p.chosen, p.chosen_text, p.chosen_q], ["rejected", p.rejected, p.rejected_text, p.rejected_q]].forEach(function (s) {
            const side = el("span", "side");
            side.appendChild(el("span", "mark " + s[0], s[0]));
            side.appendChild(document.createTextNode(" " + (s[1] === null ? "(no child with this text)" : "#" + s[1]) + " "));
            side.appendChild(el("span", "text", oneLine(s[2], 120)));
            side.appendChild(document.createTextNode(" Q " + fmt(s[3])));
            d.appendChild(side);
          });
          pb.appendChild(d);
        });
        li.appendChild(pb);
      }
      const item = { x: x, li: li, tog: tog, ul: null, open: false };
      function toggle(open) {
        if (!kids[x].length) return;
        item.open = open === undefined ? !item.open : open;
        if (item.open && !item.ul) {
          item.ul = el("ul", "children");
          kids[x].forEach(function (c) { item.ul.appendChild(nodeItem(c)); });
          li.appendChild(item.ul);
        }
        if (item.ul) item.ul.hidden = !item.open;
        tog.textContent = item.open ? "\u25be" : "\u25b8";
        tog.setAttribute("aria-expanded", String(item.open));
      }
      item.toggle = toggle;
      row.addEventListener("click", function () { toggle(); });
      items.push(item);
      return li;
    }
    const ul = el("ul", "tree");
    ul.appendChild(nodeItem(0));
    box.appendChild(ul);
    items[0].toggle(true);
    all.addEventListener("click", function () {
      for (let i = 0; i < items.length; i++) items[i].toggle(true);  // grows while it runs
    });
    none.addEventListener("click", function () {
      items.forEach(function (it) { if (it.x !== 0) it.toggle(false); });
    });
    return box;
  }
  show(0);
})();
"""
