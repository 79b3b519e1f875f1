"""The end-of-run report: a Markdown file with PNG plots, built from what a run left on disk.

Reads an iTool run folder (``jobs/itool.py``: ``table.json``, ``iterN-mcts/``, ``broadcasts.jsonl``)
or a single rollout folder (``jobs/rollout.py``: ``pairs.jsonl``, ``progress.jsonl``,
``trees_finished.jsonl``), and writes ``report.md`` plus

* ``accuracy.png``: held-out accuracy per stage, one line per held-out set;
* ``reward.png``: mean Q of the chosen and rejected steps per iteration;
* ``pairs.png``: step-level pairs per iteration;
* ``throughput.png``: expansions per second over time, per MCTS stage;
* ``tree.png``: one search tree, nodes coloured by Q, labelled with their step text.

Gathering (:func:`collect`) is plain Python; only :func:`write_report` imports matplotlib.
Missing parts (a run stopped early) are left out of the report, never an error.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_ITER = re.compile(r"^iter(\d+)-mcts$")


@dataclass
class MCTSStats:
    """One MCTS stage (an iteration, or a whole rollout folder)."""

    name: str
    pairs: int = 0
    trees: int = 0
    mean_chosen_q: float | None = None
    mean_rejected_q: float | None = None
    throughput: list[tuple[float, float]] = field(default_factory=list)  # (t, expansions/s)
    expansions: int = 0
    seconds: float = 0.0
    tree: dict[str, Any] | None = None


@dataclass
class RunData:
    run_dir: Path
    table: dict[str, dict[str, Any]] = field(default_factory=dict)
    mcts: list[MCTSStats] = field(default_factory=list)
    broadcasts: list[dict[str, Any]] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def heldout_sets(self) -> list[str]:
        names: list[str] = []
        for row in self.table.values():
            names += [k for k, v in row.items() if isinstance(v, dict) and "accuracy" in v]
        return list(dict.fromkeys(names))


def _jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSONL file; a torn last line (a run killed mid-write) is skipped."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def throughput(progress: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """Expansions per second between consecutive progress records (``t``, ``expansions``);
    a manager restart (expansions counted from zero again) starts a new baseline."""
    out = []
    for a, b in zip(progress, progress[1:], strict=False):
        dt, de = b["t"] - a["t"], b["expansions"] - a["expansions"]
        if dt > 0 and de >= 0:
            out.append((b["t"], de / dt))
    return out


def mcts_stats(name: str, folder: Path) -> MCTSStats:
    st = MCTSStats(name)
    pairs = _jsonl(folder / "pairs.jsonl")
    st.pairs = len(pairs)
    if pairs:
        st.mean_chosen_q = sum(p["chosen_q"] for p in pairs) / len(pairs)
        st.mean_rejected_q = sum(p["rejected_q"] for p in pairs) / len(pairs)
    st.trees = len(_jsonl(folder / "finished.jsonl"))
    progress = _jsonl(folder / "progress.jsonl")
    st.throughput = throughput(progress)
    if progress:
        st.expansions = max(p["expansions"] for p in progress)
        st.seconds = progress[-1]["t"]
    trees = _jsonl(folder / "trees_finished.jsonl")
    if trees:
        st.tree = max(trees, key=lambda t: len(t["parent"]))
    return st


def collect(run_dir: str | Path) -> RunData:
    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"report: {run} is not a folder")
    data = RunData(run)
    table = run / "table.json"
    if table.exists():
        data.table = json.loads(table.read_text())
    iters = sorted(
        (int(m.group(1)), d) for d in run.iterdir() if d.is_dir() and (m := _ITER.match(d.name))
    )
    data.mcts = [mcts_stats(f"iter{i}", d) for i, d in iters]
    if not iters and (run / "pairs.jsonl").exists():  # a rollout folder
        data.mcts = [mcts_stats(run.name, run)]
    data.broadcasts = _jsonl(run / "broadcasts.jsonl")
    for d in sorted(run.iterdir()):
        marker = d / "DONE"
        if d.is_dir() and marker.is_file():
            try:
                data.stage_seconds[d.name] = float(json.loads(marker.read_text())["seconds"])
            except (ValueError, KeyError, TypeError):
                continue
    return data


def tree_layout(tree: dict[str, Any]) -> dict[int, tuple[float, int]]:
    """(x, depth) of every node: leaves spread left to right in depth-first order, a parent
    centred over its children."""
    parent = tree["parent"]
    kids: dict[int, list[int]] = {}
    for i, p in enumerate(parent):
        if p >= 0:
            kids.setdefault(p, []).append(i)
    pos: dict[int, tuple[float, int]] = {}
    nxt = [0.0]

    def place(i: int, depth: int) -> float:
        ch = kids.get(i, [])
        if not ch:
            x = nxt[0]
            nxt[0] += 1
        else:
            xs = [place(c, depth + 1) for c in ch]
            x = (xs[0] + xs[-1]) / 2
        pos[i] = (x, depth)
        return x

    roots = [i for i, p in enumerate(parent) if p < 0]
    for r in roots:
        place(r, 0)
    return pos


def node_q(tree: dict[str, Any], i: int) -> float | None:
    n = tree["visits"][i]
    return tree["w"][i] / n if n else None


# ---- writing -------------------------------------------------------------------------------
def _fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def markdown(data: RunData, images: list[str]) -> str:
    lines = [f"# itool-ray run report: `{data.run_dir}`", ""]
    sets = data.heldout_sets
    if data.table:
        lines += ["## Held-out accuracy per stage", ""]
        lines.append("| stage | version | " + " | ".join(sets) + " | pairs |")
        lines.append("|---|---|" + "---|" * len(sets) + "---|")
        for stage, row in data.table.items():
            cells = []
            for s in sets:
                v = row.get(s)
                cells.append(f"{v['accuracy']:.3f} (n={v['n']})" if isinstance(v, dict) else "-")
            lines.append(
                f"| {stage} | {row.get('version', '-')} | "
                + " | ".join(cells)
                + f" | {row.get('pairs', '-')} |"
            )
        lines.append("")
    if data.mcts:
        lines += ["## MCTS per iteration", ""]
        lines.append(
            "| stage | trees | pairs | mean Q chosen | mean Q rejected | expansions | seconds "
            "| expansions/s |"
        )
        lines.append("|---|---|---|---|---|---|---|---|")
        for m in data.mcts:
            rate = m.expansions / m.seconds if m.seconds else None
            lines.append(
                f"| {m.name} | {m.trees} | {m.pairs} | {_fmt(m.mean_chosen_q)} | "
                f"{_fmt(m.mean_rejected_q)} | {m.expansions} | {_fmt(m.seconds, 1)} | "
                f"{_fmt(rate, 2)} |"
            )
        lines.append("")
    if data.broadcasts:
        lines += ["## Weight broadcasts", "", "| version | seconds |", "|---|---|"]
        lines += [f"| {b['version']} | {b['seconds']} |" for b in data.broadcasts]
        lines.append("")
    if data.stage_seconds:
        total = sum(data.stage_seconds.values())
        lines += ["## Stage times", "", "| stage | seconds |", "|---|---|"]
        lines += [f"| {k} | {v:.1f} |" for k, v in data.stage_seconds.items()]
        lines += [f"| total | {total:.1f} |", ""]
    if images:
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in images] + [""]
    return "\n".join(lines)


def write_report(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write ``report.md``, its PNG plots and ``report.html`` (``itool_ray.report_html``) into
    ``out_dir`` (default ``run_dir/report``).

    Text in the plots comes from model output and data (step text, tree ids), so matplotlib's
    mathtext is off: a ``$`` in a step is drawn as a ``$``. A plot that still fails to draw is
    logged, left out and named in the Markdown; the rest of the report is written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = collect(run_dir)
    out = Path(out_dir) if out_dir else data.run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    images: list[str] = []
    failed: list[str] = []
    for name, draw in _plots(data):
        try:
            with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
                fig = draw(plt)
                fig.tight_layout()
                fig.savefig(out / f"{name}.png", dpi=110)
            images.append(f"{name}.png")
        except Exception as e:  # a figure is optional; the numbers are in the Markdown
            log.warning("report: plot %s not drawn: %s: %s", name, type(e).__name__, e)
            failed.append(f"{name} ({type(e).__name__}: {str(e).strip().splitlines()[0][:200]})")
        finally:
            plt.close("all")
    not_drawn = "\n## Plots not drawn\n\n" + "".join(f"- {f}\n" for f in failed) if failed else ""
    path = out / "report.md"
    path.write_text(markdown(data, images) + not_drawn)
    # ---- report.html beside it: the same tables and plots, and the tree browser ----------
    from itool_ray.report_html import write_html

    write_html(data.run_dir, out, markdown(data, []) + not_drawn, images)
    return path


def _plots(data: RunData) -> list[tuple[str, Any]]:
    """(name, draw) for each plot the run has data for; ``draw(plt)`` returns the figure."""
    plots: list[tuple[str, Any]] = []
    if data.table and data.heldout_sets:

        def accuracy(plt):
            fig, ax = plt.subplots(figsize=(7, 4))
            stages = list(data.table)
            for s in data.heldout_sets:
                ys = [(r.get(s) or {}).get("accuracy") for r in data.table.values()]
                ax.plot(stages, [float("nan") if y is None else y for y in ys], marker="o", label=s)
            ax.set(title="Held-out accuracy per stage", ylabel="accuracy", ylim=(-0.02, 1.02))
            ax.legend(fontsize=8)
            return fig

        plots.append(("accuracy", accuracy))
    with_q = [m for m in data.mcts if m.mean_chosen_q is not None]
    if with_q:

        def reward(plt):
            fig, ax = plt.subplots(figsize=(6, 4))
            names = [m.name for m in with_q]
            ax.plot(names, [m.mean_chosen_q for m in with_q], marker="o", label="chosen step")
            ax.plot(names, [m.mean_rejected_q for m in with_q], marker="o", label="rejected step")
            ax.set(title="Mean Q (reward) of the pairs per iteration", ylabel="Q")
            ax.legend()
            return fig

        plots.append(("reward", reward))
    if data.mcts:

        def pairs(plt):
            fig, ax = plt.subplots(figsize=(6, 4))
            ax.bar([m.name for m in data.mcts], [m.pairs for m in data.mcts])
            ax.set(title="Step-level preference pairs per iteration", ylabel="pairs")
            return fig

        plots.append(("pairs", pairs))
    if any(m.throughput for m in data.mcts):

        def speed(plt):
            fig, ax = plt.subplots(figsize=(7, 4))
            for m in data.mcts:
                if m.throughput:
                    ax.plot(*zip(*m.throughput, strict=True), label=m.name)
            ax.set(title="Rollout throughput", xlabel="seconds", ylabel="expansions / s")
            ax.legend()
            return fig

        plots.append(("throughput", speed))
    tree = next((m.tree for m in reversed(data.mcts) if m.tree), None)
    if tree:
        plots.append(("tree", lambda plt: _plot_tree(plt, tree)))
    return plots


def _plot_tree(plt, tree: dict[str, Any]):
    pos = tree_layout(tree)
    width = max(x for x, _ in pos.values()) + 1
    depth = max(d for _, d in pos.values()) + 1
    fig, ax = plt.subplots(figsize=(min(4 + 1.6 * width, 24), 1.2 + 1.4 * depth))
    qs = [node_q(tree, i) for i in range(len(tree["parent"]))]
    known = [q for q in qs if q is not None] or [0.0]
    lo, hi = min(known), max(known)
    cmap = plt.get_cmap("RdYlGn")
    for i, p in enumerate(tree["parent"]):
        if p >= 0:
            (x0, y0), (x1, y1) = pos[p], pos[i]
            ax.plot([x0, x1], [-y0, -y1], color="0.6", lw=1, zorder=1)
    for i, (x, d) in pos.items():
        q = qs[i]
        colour = "0.85" if q is None else cmap((q - lo) / (hi - lo) if hi > lo else 0.5)
        text = " ".join("".join(c for c in tree["text"][i] if c.isprintable()).split())
        label = (text[:22] + "...") if len(text) > 25 else text
        label = label or ("(root)" if tree["parent"][i] < 0 else "(empty step)")
        ax.scatter([x], [-d], s=220, color=colour, edgecolors="k", zorder=2)
        ax.annotate(
            f"{label}\nQ={_fmt(q, 2)} N={tree['visits'][i]}",
            (x, -d),
            textcoords="offset points",
            xytext=(0, -22),
            ha="center",
            fontsize=6,
        )
    ax.set_title(f"Search tree {tree['tree_id']} ({len(tree['parent'])} nodes, colour = Q)")
    ax.axis("off")
    ax.set_ylim(-depth + 0.3, 0.6)
    return fig
