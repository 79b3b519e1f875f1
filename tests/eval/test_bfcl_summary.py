"""BFCL's summary arithmetic (``generate_leaderboard_csv`` of nvidia-bfcl), by hand."""

from __future__ import annotations

import pytest

from itool_ray.eval.bfcl_summary import Acc, bfcl_category_sizes, bfcl_columns, unweighted, weighted


def test_weighted_and_unweighted_means():
    a, b = Acc(1.0, 1), Acc(0.0, 3)
    assert weighted([a, b]).accuracy == 0.25 and weighted([a, b]).total_count == 4
    assert unweighted([a, b]).accuracy == 0.5 and unweighted([a, b]).total_count == 4
    assert weighted([Acc(0.5, 0)]).accuracy == 0.0  # BFCL: no entries -> 0
    assert weighted([None, None]) is None and unweighted([]) is None


def test_live_is_weighted_non_live_unweighted():
    scores = {
        "simple": Acc(1.0, 1),
        "multiple": Acc(0.0, 3),
        "live_simple": Acc(1.0, 1),
        "live_multiple": Acc(0.0, 3),
    }
    cols = bfcl_columns(scores)
    assert cols["non_live_ast"].accuracy == 0.5  # (1 + 0) / 2
    assert cols["live_ast"].accuracy == 0.25  # (1*1 + 0*3) / 4
    assert cols["live"].accuracy == 0.25
    assert cols["overall"].accuracy == pytest.approx((0.5 + 0.25) / 2)
    assert cols["relevance"] is None and cols["irrelevance"] is None and cols["multi_turn"] is None


def test_leaderboard_rule_counts_missing_categories_as_zero():
    sizes = {"java": 100, "javascript": 50, "live_relevance": 18, "multi_turn_base": 200}
    scores = {
        "simple": Acc(0.9, 400),
        "multiple": Acc(0.6, 200),
        "parallel": Acc(0.3, 200),
        "parallel_multiple": Acc(0.3, 200),
        "irrelevance": Acc(0.6, 240),
        "live_simple": Acc(0.5, 258),
        "live_irrelevance": Acc(0.4, 882),
    }
    cols = bfcl_columns(scores, "bfcl", sizes)
    simple_ast = 0.9 / 3  # python simple, java 0, javascript 0
    non_live_ast = (simple_ast + 0.6 + 0.3 + 0.3) / 4
    non_live = (simple_ast + 0.6 + 0.3 + 0.3 + 0 + 0 + 0 + 0 + 0.6) / 9  # four exec groups 0
    live = (0.5 * 258 + 0.4 * 882) / (258 + 0 + 0 + 0 + 882 + 18)  # relevance: 0 over 18
    assert cols["non_live_ast"].accuracy == pytest.approx(non_live_ast)
    assert cols["non_live_ast"].na  # shown N/A by BFCL (java, javascript not run)
    assert cols["non_live"].accuracy == pytest.approx(non_live) and not cols["non_live"].na
    assert cols["live"].accuracy == pytest.approx(live) and cols["live"].total_count == 1158
    assert cols["overall"].accuracy == pytest.approx((live + non_live + 0) / 3)
    assert cols["relevance"].na and cols["relevance"].total_count == 18
    assert cols["irrelevance"].accuracy == pytest.approx((0.6 + 0.4) / 2)


def test_unknown_rule():
    with pytest.raises(ValueError, match="rule must be one of"):
        bfcl_columns({"simple": Acc(1.0, 1)}, "mean")  # type: ignore[arg-type]


def test_category_sizes_from_the_installed_package():
    pytest.importorskip("bfcl")
    sizes = bfcl_category_sizes()
    assert sizes["simple"] == 400 and sizes["live_relevance"] == 18
    assert sizes["live_multiple"] == 1053 and sizes["multi_turn_base"] == 200
