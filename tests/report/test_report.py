"""The run report: numbers gathered from a run folder, the Markdown and the PNG plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from itool_ray.report import collect, throughput, tree_layout, write_report

TREE = {
    "tree_id": "t-0",
    "parent": [-1, 0, 0, 1],
    "visits": [4, 3, 1, 2],
    "w": [2.0, 2.4, -0.5, 1.0],
    "text": ["", "[get_weather(city='Paris')]", "I cannot help.", " The weather is mild."],
}


def _jsonl(path: Path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    table = {
        "base": {"version": 0, "synth": {"accuracy": 0.25, "n": 8, "parse_errors": 1}},
        "sft": {"version": 1, "synth": {"accuracy": 0.5, "n": 8, "parse_errors": 0}},
        "iter1": {
            "version": 2,
            "synth": {"accuracy": 0.625, "n": 8, "parse_errors": 0},
            "pairs": 3,
        },
    }
    (run / "table.json").write_text(json.dumps(table))
    mcts = run / "iter1-mcts"
    mcts.mkdir()
    _jsonl(
        mcts / "pairs.jsonl",
        [
            {"chosen_q": q, "rejected_q": r, "tree_id": "t-0"}
            for q, r in [(0.9, 0.1), (0.6, -0.2), (0.3, 0.0)]
        ],
    )
    _jsonl(
        mcts / "finished.jsonl", [{"tree_id": "t-0", "pairs": 3}, {"tree_id": "t-1", "pairs": 0}]
    )
    _jsonl(
        mcts / "progress.jsonl",
        [{"t": 0.0, "expansions": 0}, {"t": 2.0, "expansions": 10}, {"t": 4.0, "expansions": 30}],
    )
    _jsonl(mcts / "trees_finished.jsonl", [TREE])
    (mcts / "DONE").write_text(json.dumps({"pairs": 3, "seconds": 12.5}))
    (run / "sft").mkdir()
    (run / "sft" / "DONE").write_text(json.dumps({"seconds": 30.0}))
    _jsonl(run / "broadcasts.jsonl", [{"version": 2, "seconds": 1.5}])
    return run


def test_collect_reads_every_part(run_dir):
    data = collect(run_dir)
    assert data.heldout_sets == ["synth"]
    (m,) = data.mcts
    assert (m.name, m.pairs, m.trees, m.expansions, m.seconds) == ("iter1", 3, 2, 30, 4.0)
    assert m.mean_chosen_q == pytest.approx(0.6) and m.mean_rejected_q == pytest.approx(-0.1 / 3)
    assert m.throughput == [(2.0, 5.0), (4.0, 10.0)]
    assert m.tree["tree_id"] == "t-0"
    assert data.stage_seconds == {"iter1-mcts": 12.5, "sft": 30.0}
    assert data.broadcasts == [{"version": 2, "seconds": 1.5}]


def test_throughput_skips_a_restart_and_torn_lines(tmp_path):
    # the manager restarted between t=4 and t=6: its counter starts again from zero
    prog = [
        {"t": 0, "expansions": 0},
        {"t": 4, "expansions": 40},
        {"t": 6, "expansions": 4},
        {"t": 8, "expansions": 12},
    ]
    assert throughput(prog) == [(4, 10.0), (8, 4.0)]
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "pairs.jsonl").write_text('{"chosen_q": 1, "rejected_q": 0}\n{"chosen_q": 0.5, "rej')
    (m,) = collect(folder).mcts  # a rollout folder: the folder itself is the one stage
    assert m.pairs == 1 and m.mean_chosen_q == 1


def test_tree_layout_centres_parents_over_children():
    pos = tree_layout(TREE)
    assert pos == {3: (0.0, 2), 1: (0.0, 1), 2: (1.0, 1), 0: (0.5, 0)}


def test_write_report_markdown_and_plots(run_dir):
    path = write_report(run_dir)
    assert path == run_dir / "report" / "report.md"
    md = path.read_text()
    assert "| iter1 | 2 | 0.625 (n=8) | 3 |" in md
    assert "| iter1 | 2 | 3 | 0.600 | -0.033 | 30 | 4.0 | 7.50 |" in md
    assert "| 2 | 1.5 |" in md and "| total | 42.5 |" in md
    for name in ("accuracy", "reward", "pairs", "throughput", "tree"):
        png = run_dir / "report" / f"{name}.png"
        assert f"![{name}]({name}.png)" in md
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        collect(tmp_path / "nope")


POISON = [
    "q\ufffdz?$$True\ufffd\ufffd5onvert Ma",  # a sampled step that once failed the rollout job
    "$\\frac{1}{",
    "costs $5 and $6",
    "a_{b} $x^$ \\",
    "$\\undefinedmacro$",
]


def test_step_text_is_drawn_as_text_not_mathtext(run_dir):
    """Model output in a tree label (and a tree id from the data) is never parsed as
    mathtext: before, a step with ``$$`` raised in matplotlib and failed the whole job."""
    tree = dict(TREE, tree_id="t-$1$", text=["", *POISON[:3]])
    tree2 = dict(
        TREE,
        tree_id="t-$$",
        parent=[-1, 0, 0],
        visits=[2, 1, 1],
        w=[0.0, 0.5, -0.5],
        text=["", *POISON[3:]],
    )
    _jsonl(run_dir / "iter1-mcts" / "trees_finished.jsonl", [tree2, tree])
    path = write_report(run_dir)
    md = path.read_text()
    assert "Plots not drawn" not in md
    assert (run_dir / "report" / "tree.png").stat().st_size > 5000


def test_a_plot_that_fails_is_named_and_the_rest_written(run_dir, monkeypatch):
    import itool_ray.report as report

    def broken(plt, tree):
        raise ValueError("cannot draw this tree\nsecond line")

    monkeypatch.setattr(report, "_plot_tree", broken)
    md = write_report(run_dir).read_text()
    assert "## Plots not drawn" in md and "- tree (ValueError: cannot draw this tree)" in md
    assert "![tree]" not in md and not (run_dir / "report" / "tree.png").exists()
    for name in ("accuracy", "reward", "pairs", "throughput"):
        assert f"![{name}]({name}.png)" in md
    assert "cannot draw this tree" in (run_dir / "report" / "report.html").read_text()
