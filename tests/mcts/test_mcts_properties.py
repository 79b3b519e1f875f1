"""Property tests: random select / expand / backup / abandon / checkpoint sequences, in both
rollout modes (a terminal rollout's next leaf joins the in-flight selections), keep every
invariant of ``check_tree`` (N = own + sum N(children); V = visit-weighted mean of children Q;
Q = r + gamma V; in-flight and selectable counts match the outstanding selections; finite
values), and abandoning everything returns the in-flight counts to zero."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from itool_ray.mcts import MCTSConfig, Tree
from itool_ray.mcts.testing import check_tree, make_step, snapshot
from itool_ray.mcts.tree import DONE, EXPANDED, SELECTED

TEXTS = ["a, ", "b, ", "c, ", "d]", "e]"]  # few texts: duplicates are frequent
rewards = st.floats(min_value=-3.0, max_value=3.0, allow_nan=False)
step_specs = st.lists(
    st.tuples(st.sampled_from(TEXTS), st.floats(-5.0, 0.0), st.integers(0, 6), st.booleans()),
    max_size=5,
)


class TreeMachine(RuleBasedStateMachine):
    @initialize(
        k=st.integers(1, 5),
        gamma=st.floats(0.0, 1.0),
        c=st.floats(0.0, 4.0),
        vl=st.sampled_from([0.0, 0.5, 3.0]),
        inflight=st.integers(1, 6),
        revisit=st.booleans(),
        depth=st.integers(1, 6),
        rollout=st.sampled_from(["terminal", "one_step"]),
    )
    def setup(self, k, gamma, c, vl, inflight, revisit, depth, rollout):
        self.cfg = MCTSConfig(
            k=k,
            gamma=gamma,
            c_puct=c,
            virtual_loss=vl,
            max_inflight=inflight,
            revisit_terminals=revisit,
            max_depth=depth,
            max_tokens=12,
            simulations=10**6,
            rollout=rollout,
        )
        self.tree = Tree("p", self.cfg, root_reward=0.25)
        self.leaves = []
        self.backups = 0

    def _live(self, state=None):
        return [x for x in self.leaves if x.state != DONE and (state is None or x.state == state)]

    @rule()
    def select(self):
        leaf = self.tree.select()
        if leaf is not None:
            assert leaf.node < len(self.tree)
            self.leaves.append(leaf)
        else:
            t = self.tree
            assert len(self._live()) >= self.cfg.max_inflight or t.selectable(0) == 0

    @precondition(lambda self: self._live(SELECTED))
    @rule(i=st.integers(0, 100), specs=step_specs)
    def expand(self, i, specs):
        live = self._live(SELECTED)
        leaf = live[i % len(live)]
        if leaf.terminal:
            self.tree.backup(leaf)
            self.backups += 1
            return
        steps = [make_step(t, lp, n, term) for t, lp, n, term in specs]
        cands = self.tree.expand(leaf, steps)
        assert len(cands) == len({t for t, *_ in specs})

    @precondition(lambda self: self._live(EXPANDED))
    @rule(i=st.integers(0, 100), data=st.data())
    def backup(self, i, data):
        live = self._live(EXPANDED)
        leaf = live[i % len(live)]
        rs = data.draw(st.lists(rewards, min_size=len(leaf.steps), max_size=len(leaf.steps)))
        ids = self.tree.backup(leaf, rs)
        assert len(ids) == len(rs)
        if leaf.next is None:  # the simulation ended
            self.backups += 1
        else:  # a terminal rollout goes on below one of the new children
            assert self.cfg.rollout == "terminal" and leaf.next.node in ids
            assert not self.tree.terminal(leaf.next.node)
            self.leaves.append(leaf.next)

    @precondition(lambda self: self._live())
    @rule(i=st.integers(0, 100))
    def abandon(self, i):
        live = self._live()
        self.tree.abandon(live[i % len(live)])

    @rule()
    def checkpoint(self):
        back = Tree.from_dict(json.loads(json.dumps(self.tree.to_dict())), self.cfg)
        check_tree(back)
        assert back.to_dict() == self.tree.to_dict()
        live = self._live()
        for leaf in live:  # the restored tree equals this one with every selection abandoned
            self.tree.abandon(leaf)
        assert snapshot(back) == snapshot(self.tree)

    @invariant()
    def consistent(self):
        if hasattr(self, "tree"):
            check_tree(self.tree, self.leaves)
            assert self.tree.simulations == self.backups

    def teardown(self):
        if hasattr(self, "tree"):
            for leaf in self._live():
                self.tree.abandon(leaf)
            assert all(self.tree.inflight(x) == 0 for x in range(len(self.tree)))
            check_tree(self.tree)


TestTreeMachine = TreeMachine.TestCase
TestTreeMachine.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
