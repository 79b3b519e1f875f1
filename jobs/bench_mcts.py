"""Throughput and memory of the MCTS core: 1,000 trees x 64 simulations, fake engine.

Run:
    .venv/bin/python jobs/bench_mcts.py                      # 1,000 trees x 64 simulations
    .venv/bin/python jobs/bench_mcts.py --trees 20 --sims 8  # smoke (the test suite runs this)

A cycle is one select + expand + backup. Rates are cycles per CPU second of this process
(``time.process_time``, one core, garbage collector on), best of ``--repeat`` runs:

* core: the ``Tree`` cycle alone, replaying recorded engine outputs and rewards (no engine,
  no request objects, no reward function) - what the Ray tree manager pays per simulation;
* search: ``Searcher`` rounds end to end with ``FakeEngine`` (zero latency) and
  ``fake_outcome``: the core plus request building, the fake's generation and evaluation, the
  reward function (pair extraction is timed apart: ``pairs_per_s``);
* sequential: the same with ``max_inflight = 1`` (one selection per tree at a time);
* naive: the same algorithm with one Python object per node (``NaiveTree`` below), replaying
  the same records; the run checks that it builds bit-identical trees;
* bytes per node: ``tracemalloc`` of the trees built by a replay, token ids included. The
  fake engine shares its step strings between nodes, so the size of a private copy of each
  step's text is added separately (a real engine returns a fresh string per step).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import math
import platform
import shlex
import sys
import time
import tracemalloc
from dataclasses import replace

from itool_ray.mcts import (
    FakeEngine,
    MCTSConfig,
    Searcher,
    Tree,
    extract_pairs,
    fake_outcome,
    make_fake_samples,
)
from itool_ray.mcts.puct import effective_q, puct_score
from itool_ray.mcts.search import EvalRequest, ExpandRequest, request_seed
from itool_ray.mcts.step import merge_steps


def record(samples, cfg: MCTSConfig, engine: FakeEngine):
    """Run the search once in rounds (as ``Searcher`` does: R = O + C) and record
    (root reward, [(steps, rewards)]) per tree, for ``replay``."""
    trees = [Tree(s.id, cfg) for s in samples]
    roots = engine.evaluate([EvalRequest(s.id, 0, (), (), "", False) for s in samples])
    recs = []
    for s, t, c in zip(samples, trees, roots, strict=True):
        r0 = fake_outcome(s, "", False) + c
        t.set_root_reward(r0)
        recs.append((r0, []))
    while True:
        batch = []
        for i, t in enumerate(trees):
            while (leaf := t.select()) is not None:
                if leaf.terminal:
                    t.backup(leaf)
                    continue
                batch.append((i, leaf, t.prefix(leaf.node)))
        if not batch:
            return recs
        reqs = [
            ExpandRequest(
                trees[i].tree_id,
                leaf.node,
                (),
                (),
                p,
                cfg.k,
                cfg.max_step_tokens,
                request_seed(cfg.seed, trees[i].tree_id, p),
            )
            for i, leaf, p in batch
        ]
        for (i, leaf, p), steps in zip(batch, engine.expand(reqs), strict=True):
            cands = trees[i].expand(leaf, steps)
            evals = [
                EvalRequest(trees[i].tree_id, leaf.node, (), (), p + c.text, c.terminal)
                for c in cands
            ]
            conf = engine.evaluate(evals)
            rewards = [
                fake_outcome(samples[i], e.response, e.terminal) + c
                for e, c in zip(evals, conf, strict=True)
            ]
            trees[i].backup(leaf, rewards)
            recs[i][1].append((steps, rewards))


def replay(recs, cfg: MCTSConfig, make_tree=None):
    """Rebuild the recorded trees with the cycle alone; returns (trees, cycles)."""
    make_tree = make_tree or (lambda i, r0: Tree(f"fake-{i}", cfg, root_reward=r0))
    trees = [make_tree(i, r0) for i, (r0, _) in enumerate(recs)]
    pos = [0] * len(trees)
    cycles = 0
    while True:
        batch = []
        for i, t in enumerate(trees):
            while (leaf := t.select()) is not None:
                if leaf.terminal:
                    t.backup(leaf)
                    cycles += 1
                    continue
                batch.append((i, leaf))
        if not batch:
            return trees, cycles
        for i, leaf in batch:
            steps, rewards = recs[i][1][pos[i]]
            pos[i] += 1
            t = trees[i]
            t.expand(leaf, steps)
            t.backup(leaf, rewards)
        cycles += len(batch)


# ----------------------------------------------------------------------------- baseline
class NaiveNode:
    """One object (with a __dict__) per node: the layout the struct-of-arrays tree avoids."""

    def __init__(self, parent, text, token_ids, prior, reward, terminal, version):
        self.parent = parent
        self.children = []
        self.text = text
        self.token_ids = list(token_ids)
        self.prior = prior
        self.R = reward
        self.r = reward - parent.R if parent is not None else 0.0
        self.N = 1 if parent is not None else 0
        self.Q = self.r
        self.W = 0.0
        self.inflight = 0
        self.open = 1
        self.terminal = terminal
        self.depth = parent.depth + 1 if parent is not None else 0
        self.ntok = (parent.ntok if parent is not None else 0) + len(token_ids)
        self.version = version


class NaiveLeaf:
    def __init__(self, node):
        self.node, self.terminal, self.steps, self.priors = node, node.terminal, None, None


class NaiveTree:
    """Same algorithm and arithmetic as ``Tree`` (so identical trees), written plainly."""

    def __init__(self, cfg, root_reward):
        self.cfg = cfg
        self.nodes = [NaiveNode(None, "", (), 1.0, root_reward, False, 0)]
        self.simulations = self.outstanding = 0

    def select(self):
        cfg = self.cfg
        if (
            self.outstanding >= cfg.max_inflight
            or self.simulations + self.outstanding >= cfg.simulations
        ):
            return None
        node = self.nodes[0]
        if not node.open:
            return None
        while node.children:
            scores = [
                puct_score(
                    effective_q(c.Q, c.N, c.inflight, cfg.virtual_loss),
                    c.prior,
                    node.N + node.inflight,
                    c.N + c.inflight,
                    cfg.c_puct,
                )
                if c.open
                else -math.inf
                for c in node.children
            ]
            node = node.children[scores.index(max(scores))]
        n = node
        while n is not None:
            n.inflight += 1
            if not node.terminal:
                n.open -= 1
            n = n.parent
        self.outstanding += 1
        return NaiveLeaf(node)

    def expand(self, leaf, steps):
        merged, priors = merge_steps(steps)
        node, cfg = leaf.node, self.cfg
        for i, s in enumerate(merged):
            if not s.terminal and (
                node.depth + 1 >= cfg.max_depth or node.ntok + len(s.token_ids) >= cfg.max_tokens
            ):
                merged[i] = replace(s, terminal=True)
        leaf.steps, leaf.priors = merged, priors
        return merged

    def backup(self, leaf, rewards=None):
        node, g = leaf.node, self.cfg.gamma
        nold, qold = node.N, node.Q
        if leaf.terminal:
            dn = 1
            d_open = 0
            node.N += 1
        else:
            w = 0.0
            d_open = 0
            for s, p, rv in zip(leaf.steps, leaf.priors, rewards, strict=True):
                child = NaiveNode(node, s.text, s.token_ids, p, float(rv), s.terminal, 0)
                child.open = 0 if s.terminal and not self.cfg.revisit_terminals else 1
                d_open += child.open
                node.children.append(child)
                self.nodes.append(child)
                w += child.Q
            dn = len(leaf.steps)
            node.W = w
            node.N += dn
            if node.parent is not None:
                node.Q = node.r + g * (w / (node.N - 1))
        node.inflight -= 1
        node.open += d_open
        child, node = node, node.parent
        while node is not None:
            node.W += child.N * child.Q - nold * qold
            nold, qold = node.N, node.Q
            node.N += dn
            if node.parent is not None:
                node.Q = node.r + g * (node.W / (node.N - 1))
            node.inflight -= 1
            node.open += d_open
            child, node = node, node.parent
        self.simulations += 1
        self.outstanding -= 1


# ----------------------------------------------------------------------------- measures
def extract_all(trees, samples):
    return [p for t, s in zip(trees, samples, strict=True) for p in extract_pairs(t, s)]


def best_time(fn, repeat):
    """Best CPU time (``process_time``: the figure holds on a shared machine) of ``repeat``."""
    best, out = math.inf, None
    for _ in range(repeat):
        gc.collect()
        t0 = time.process_time()
        out = fn()
        best = min(best, time.process_time() - t0)
    return best, out


def bytes_per_node(build):
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    trees = build()
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return used, trees


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trees", type=int, default=1000)
    ap.add_argument("--sims", type=int, default=64)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--inflight", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--memory-trees", type=int, default=200)
    ap.add_argument("--json", action="store_true", help="print one JSON line only")
    args = ap.parse_args(argv)

    # one-step cycles: the naive reference tree below implements those (the cost of a cycle is
    # the same in terminal rollouts, which chain several per simulation)
    cfg = MCTSConfig(
        k=args.k, simulations=args.sims, max_inflight=args.inflight, rollout="one_step"
    )
    samples = make_fake_samples(args.trees, seed=0)

    def run_search(c):
        searcher = Searcher(samples, FakeEngine(seed=0), c, reward_fn=fake_outcome)
        while not searcher.done:
            searcher.step()
        return searcher.stats

    # end to end first, on a clean heap (big live object graphs slow the garbage collector)
    t_search, st = best_time(lambda: run_search(cfg), args.repeat)
    seq_cfg = replace(cfg, max_inflight=1)
    t_seq, st_seq = best_time(lambda: run_search(seq_cfg), max(1, args.repeat - 1))

    recs = record(samples, cfg, FakeEngine(seed=0))
    gc.collect()
    gc.freeze()  # the recorded engine outputs are input data, not the manager's heap
    t_core, (trees, cycles) = best_time(lambda: replay(recs, cfg), args.repeat)
    t_pairs, pairs = best_time(lambda: extract_all(trees, samples), 1)
    t_naive, (naive, _) = best_time(
        lambda: replay(recs, cfg, lambda i, r0: NaiveTree(cfg, r0)), args.repeat
    )
    for t, nt in zip(trees, naive, strict=True):  # the baseline must build the same trees
        assert [t.visits(x) for x in range(len(t))] == [n.N for n in nt.nodes]
        assert [t.q(x) for x in range(len(t))] == [n.Q for n in nt.nodes]
    del naive
    gc.unfreeze()

    nodes = sum(len(t) for t in trees)
    mem_recs = recs[: args.memory_trees]
    used, mem_trees = bytes_per_node(lambda: replay(mem_recs, cfg)[0])
    mem_nodes = sum(len(t) for t in mem_trees)
    text_copy = sum(sys.getsizeof(t.text(x)) for t in mem_trees for x in range(1, len(t)))
    used_naive, naive_trees = bytes_per_node(
        lambda: replay(mem_recs, cfg, lambda i, r0: NaiveTree(cfg, r0))[0]
    )
    out = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "trees": args.trees,
        "sims": args.sims,
        "k": args.k,
        "max_inflight": args.inflight,
        "cycles": cycles,
        "nodes": nodes,
        "core_cycles_per_s": round(cycles / t_core),
        "naive_cycles_per_s": round(cycles / t_naive),
        "core_vs_naive": round(t_naive / t_core, 2),
        "search_cycles_per_s": round(st.simulations / t_search),
        "search_engine_share": round(st.engine_seconds / st.seconds, 3),
        "sequential_cycles_per_s": round(st_seq.simulations / t_seq),
        "search_vs_sequential": round(st.simulations / t_search / (st_seq.simulations / t_seq), 2),
        "pairs": len(pairs),
        "pairs_per_s": round(len(pairs) / t_pairs),
        "bytes_per_node": round(used / mem_nodes),
        "bytes_per_node_with_own_text": round((used + text_copy) / mem_nodes),
        "naive_bytes_per_node": round(used_naive / sum(len(t.nodes) for t in naive_trees)),
    }
    if args.json:
        print(json.dumps(out))
    else:
        width = max(map(len, out))
        for key, value in out.items():
            print(f"{key:<{width}}  {value}")
    return out


if __name__ == "__main__":
    main()
