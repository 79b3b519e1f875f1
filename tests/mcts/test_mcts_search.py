"""The one-process driver, the fake engine, the reward glue and the config."""

from __future__ import annotations

import subprocess
import sys

import pytest

from itool_ray.data.sample import Sample
from itool_ray.mcts import (
    CallsOutcome,
    EvalRequest,
    ExpandRequest,
    FakeEngine,
    MCTSConfig,
    Reward,
    Searcher,
    fake_outcome,
    make_fake_samples,
    request_seed,
    search,
)
from itool_ray.mcts.testing import check_tree


@pytest.mark.parametrize("rollout", ["terminal", "one_step"])
def test_search_runs_to_budget_and_yields_pairs(rollout):
    cfg = MCTSConfig(simulations=32, k=4, max_inflight=8, rollout=rollout)
    samples = make_fake_samples(20)
    res = search(samples, FakeEngine(), cfg, reward_fn=fake_outcome, policy_version=3)
    for t in res.trees:
        assert t.simulations == 32 or t.exhausted
        assert t.outstanding == 0
        check_tree(t)
        assert all(t.version(x) == 3 for x in range(1, len(t)))
    st = res.stats
    assert st.simulations == sum(t.simulations for t in res.trees)
    assert st.expansions == sum(t.expansions for t in res.trees)
    if rollout == "one_step":
        assert st.simulations == st.expansions
    else:  # a simulation is one or more expansions, down to a terminal
        assert st.expansions > st.simulations
    assert st.eval_requests == sum(len(t) for t in res.trees)  # every child + each root
    assert res.pairs and all(p.chosen_q > p.rejected_q for p in res.pairs)
    assert all(p.policy_version == 3 for p in res.pairs)
    # root reward: O("") + C("") (fake: O = 0 before any step)
    conf = FakeEngine().evaluate([EvalRequest("fake-0", 0, (), (), "", False)])[0]
    assert res.trees[0].root_reward == Reward.from_config(cfg)(None, "", False, conf)[0]


@pytest.mark.parametrize("rollout", ["terminal", "one_step"])
def test_search_with_terminal_revisits(rollout):
    cfg = MCTSConfig(simulations=40, revisit_terminals=True, max_depth=3, rollout=rollout)
    res = search(make_fake_samples(10), FakeEngine(p_close=0.6), cfg, reward_fn=fake_outcome)
    assert res.stats.terminal_hits > 0
    started = res.stats.expansions + res.stats.terminal_hits
    if rollout == "one_step":
        assert res.stats.simulations == started
    else:
        assert res.stats.simulations < started
    for t in res.trees:
        assert t.simulations == 40  # never exhausted: terminals stay selectable
        check_tree(t)


def test_search_is_deterministic():
    cfg = MCTSConfig(simulations=16, seed=11)
    a = search(make_fake_samples(6), FakeEngine(seed=4), cfg, reward_fn=fake_outcome)
    b = search(make_fake_samples(6), FakeEngine(seed=4), cfg, reward_fn=fake_outcome)
    assert [t.to_dict() for t in a.trees] == [t.to_dict() for t in b.trees]
    c = search(
        make_fake_samples(6),
        FakeEngine(seed=4),
        MCTSConfig(simulations=16, seed=12),
        reward_fn=fake_outcome,
    )
    assert [t.to_dict() for t in a.trees] != [t.to_dict() for t in c.trees]


def test_failed_expansions_are_abandoned():
    cfg = MCTSConfig(simulations=20)
    res = search(make_fake_samples(8), FakeEngine(fail_every=3), cfg, reward_fn=fake_outcome)
    assert res.stats.abandoned > 0
    for t in res.trees:
        assert t.simulations == 20 or t.exhausted
        check_tree(t)


class _Broken(FakeEngine):
    def evaluate(self, requests):
        if requests and requests[0].node_id != 0:  # roots evaluate fine, children fail
            raise RuntimeError("replica died")
        return super().evaluate(requests)


class _Short(FakeEngine):
    def expand(self, requests):
        return super().expand(requests)[:-1]


@pytest.mark.parametrize("engine, error", [(_Broken(), RuntimeError), (_Short(), ValueError)])
def test_engine_errors_leave_no_selection_in_flight(engine, error):
    searcher = Searcher(make_fake_samples(4), engine, MCTSConfig(simulations=8))
    with pytest.raises(error):
        searcher.step()
        searcher.step()
    assert searcher.stats.abandoned > 0
    for t in searcher.trees:
        assert t.outstanding == 0
        check_tree(t)


def test_fake_engine_is_deterministic_and_call_like():
    eng = FakeEngine(seed=1)
    reqs = [
        ExpandRequest("t", 0, (), (), "", 4, 64, request_seed(0, "t", "")),
        ExpandRequest("t", 5, (), (), "[f(x=1), ", 4, 64, request_seed(0, "t", "[f(x=1), ")),
    ]
    a, b = eng.expand(reqs), FakeEngine(seed=1).expand(list(reversed(reqs)))
    assert a == list(reversed(b))  # depends on the request, not on call order
    assert all(s.text.startswith("[") or s.terminal for s in a[0])
    assert all(not s.text.startswith("[") for s in a[1])
    assert request_seed(0, "t", "x") != request_seed(1, "t", "x") != request_seed(0, "u", "x")
    # over many requests: duplicates (merged by the tree) and terminal steps both occur
    many = eng.expand([ExpandRequest("t", i, (), (), f"[f(x={i}), ", 4, 64, i) for i in range(200)])
    assert any(len({s.text for s in steps}) < 4 for steps in many)
    assert any(s.terminal for steps in many for s in steps)
    conf = eng.evaluate([EvalRequest("t", 0, (), (), f"r{i}", False) for i in range(50)])
    assert all(0.0 <= c <= 1.0 for c in conf) and len(set(conf)) > 1


def test_fake_outcome_partial_credit():
    s = Sample("s", (), ({"role": "user", "content": "q"},), "[f(x=1), g(y=2)]")
    assert fake_outcome(s, "", False) == 0.0
    assert fake_outcome(s, "[f(x=1), ", False) == 0.25  # 0.5 * 1 / 2
    assert fake_outcome(s, "[f(x=1), g(y=2), ", False) == 0.25  # the 2nd gold step closes
    assert fake_outcome(s, "[f(x=1), g(y=2)]", True) == 1.0
    assert fake_outcome(s, "[f(x=1)]", True) == 0.0


def test_calls_outcome_glue():
    reward = CallsOutcome()
    s = Sample("c", (), ({"role": "user", "content": "q"},), "[f(x=1), g(y=2)]")
    assert reward(s, "[f(x=1), g(y=2)]", True) == 1.0
    assert reward(s, "[f(x=1)]", True) == 0.0
    assert reward(s, "[f(x=1), ", False) == 0.5  # one of two gold calls so far
    assert reward(s, "[h(z=3), ", False) == 0.0  # cannot become correct any more
    assert reward(s, "[f(x=1", False) == 0.0  # no complete call yet
    assert reward(s, "Sorry.", True) == 0.0
    text = Sample("t", (), ({"role": "user", "content": "q"},), "I cannot help with that.")
    assert reward(text, "Sorry, no tool fits.", True) == 1.0
    assert reward(text, "[f(x=1)]", True) == 0.0


def test_config_validation_names_the_field():
    for kwargs, field in [
        ({"c_puct": -1}, "c_puct"),
        ({"k": 0}, "k"),
        ({"gamma": 1.5}, "gamma"),
        ({"max_inflight": 0}, "max_inflight"),
        ({"k": 2.5}, "k"),
        ({"virtual_loss": float("nan")}, "virtual_loss"),
        ({"revisit_terminals": 1}, "revisit_terminals"),
        ({"pair_min_visits": -1}, "pair_min_visits"),
    ]:
        with pytest.raises((ValueError, TypeError), match=field):
            MCTSConfig(**kwargs)
    cfg = MCTSConfig(c_puct=2, seed=5)
    assert MCTSConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown"):
        MCTSConfig.from_dict({"c_puc": 1.0})


def test_core_imports_no_heavy_stack():
    code = (
        "import sys, itool_ray.mcts\n"
        "heavy = [m for m in ('ray', 'vllm', 'torch', 'transformers', 'numpy') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
