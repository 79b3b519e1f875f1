"""Step-level preference pairs from a searched tree (iTool section 4, "Backup")."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from itool_ray.mcts.tree import Tree


class _HasPrompt(Protocol):
    """What pair extraction needs of a sample (``itool_ray.data.Sample`` has it)."""

    @property
    def messages(self) -> Sequence[dict[str, str]]: ...

    @property
    def tools(self) -> Sequence[dict[str, Any]]: ...


@dataclass(frozen=True)
class Pair:
    """One DPO example: at state ``prefix``, step ``chosen`` is preferred to ``rejected``.

    Attributes:
        prompt_messages: the conversation before the assistant turn (the sample's messages).
        tools: the candidate tools offered to the model.
        prefix: the path so far, i.e. the partial assistant turn both steps continue.
        chosen, rejected: the step texts (highest-Q and lowest-Q sibling).
        chosen_token_ids, rejected_token_ids: their token ids under the policy's tokenizer.
        chosen_q, rejected_q: their Q(s, a).
        chosen_n, rejected_n: their visit counts N.
        tree_id: the tree (sample) the pair comes from.
        node_id: the node id of the state ``prefix`` in that tree.
        depth: the depth of that state (0 = the root: empty prefix).
        policy_version: the policy version that produced both steps (siblings are produced by
            one expansion, hence one version).
        prefix_token_ids: the token ids of ``prefix`` as the replicas sampled them (the path's
            steps' ids joined), so training sees the context the policy produced, not a
            re-encoding of its text (which may split differently); None for pairs saved
            before ids were kept.
        chosen_o, rejected_o: the outcome term O of each step's state (None when unknown).
        chosen_reach, rejected_reach: the best outcome O of a terminal state in each step's
            subtree (1.0: the search found a correct complete response below it); None when
            no terminal below it was scored with terms.
    """

    prompt_messages: tuple[dict[str, str], ...]
    tools: tuple[dict[str, Any], ...]
    prefix: str
    chosen: str
    rejected: str
    chosen_token_ids: tuple[int, ...]
    rejected_token_ids: tuple[int, ...]
    chosen_q: float
    rejected_q: float
    chosen_n: int
    rejected_n: int
    tree_id: str
    node_id: int
    depth: int
    policy_version: int
    prefix_token_ids: tuple[int, ...] | None = None
    chosen_o: float | None = None
    rejected_o: float | None = None
    chosen_reach: float | None = None
    rejected_reach: float | None = None

    @property
    def margin(self) -> float:
        return self.chosen_q - self.rejected_q

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt_messages": [dict(m) for m in self.prompt_messages],
            "tools": list(self.tools),
            "prefix": self.prefix,
            "chosen": self.chosen,
            "rejected": self.rejected,
            "chosen_token_ids": list(self.chosen_token_ids),
            "rejected_token_ids": list(self.rejected_token_ids),
            "chosen_q": self.chosen_q,
            "rejected_q": self.rejected_q,
            "chosen_n": self.chosen_n,
            "rejected_n": self.rejected_n,
            "tree_id": self.tree_id,
            "node_id": self.node_id,
            "depth": self.depth,
            "policy_version": self.policy_version,
            "prefix_token_ids": (
                None if self.prefix_token_ids is None else list(self.prefix_token_ids)
            ),
            "chosen_o": self.chosen_o,
            "rejected_o": self.rejected_o,
            "chosen_reach": self.chosen_reach,
            "rejected_reach": self.rejected_reach,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Pair:
        return cls(
            prompt_messages=tuple(dict(m) for m in d["prompt_messages"]),
            tools=tuple(d["tools"]),
            prefix=d["prefix"],
            chosen=d["chosen"],
            rejected=d["rejected"],
            chosen_token_ids=tuple(d["chosen_token_ids"]),
            rejected_token_ids=tuple(d["rejected_token_ids"]),
            chosen_q=float(d["chosen_q"]),
            rejected_q=float(d["rejected_q"]),
            chosen_n=int(d["chosen_n"]),
            rejected_n=int(d["rejected_n"]),
            tree_id=d["tree_id"],
            node_id=int(d["node_id"]),
            depth=int(d["depth"]),
            policy_version=int(d["policy_version"]),
            prefix_token_ids=(
                None if d.get("prefix_token_ids") is None else tuple(d["prefix_token_ids"])
            ),
            chosen_o=d.get("chosen_o"),
            rejected_o=d.get("rejected_o"),
            chosen_reach=d.get("chosen_reach"),
            rejected_reach=d.get("rejected_reach"),
        )


def extract_pairs(
    tree: Tree,
    sample: _HasPrompt | None = None,
    *,
    min_margin: float | None = None,
    min_visits: int | None = None,
    env: Any = None,
) -> list[Pair]:
    """One pair per node with >= 2 eligible children, in node-id order (root first).

    Eligible children have ``N >= min_visits``. Among them ``chosen`` is the highest-Q child
    and ``rejected`` the lowest-Q one (ties: the lower index, i.e. the larger prior). A pair
    is kept when ``Q(chosen) - Q(rejected) >= min_margin`` and the difference is > 0. The
    thresholds default to ``tree.config.pair_min_margin`` / ``pair_min_visits``. Without a
    sample the prompt fields are empty. With an environment (``itool_ray.envs``), a pair's
    prompt is what the environment shows the policy at its node (a multi-turn pair's
    messages hold the earlier turns and tool results); for ``"message"`` steps the prefix is
    empty.
    """
    cfg = tree.config
    margin = cfg.pair_min_margin if min_margin is None else min_margin
    visits = cfg.pair_min_visits if min_visits is None else min_visits
    plain = sample is not None and env is None
    messages = tuple(sample.messages) if plain else ()
    tools = tuple(sample.tools) if plain else ()
    Q, N, kids = tree._Q, tree._N, tree._kids  # package-internal read access, for speed
    reach = terminal_reach(tree)
    out: list[Pair] = []
    for x, ks in enumerate(kids):
        if len(ks) < 2:
            continue
        hi = lo = -1
        for c in ks:
            if N[c] < visits:
                continue
            if hi < 0:
                hi = lo = c
                continue
            qc = Q[c]
            if qc > Q[hi]:
                hi = c
            if qc < Q[lo]:
                lo = c
        if hi == lo:  # fewer than two eligible children
            continue
        diff = Q[hi] - Q[lo]
        if diff <= 0.0 or diff < margin:
            continue
        at_messages, at_tools, prefix = messages, tools, None
        if env is not None and sample is not None:
            p = env.prompt(sample, tree.path_texts(x))
            at_messages, at_tools, prefix = tuple(p.messages), tuple(p.tools), p.prefix
        out.append(
            Pair(
                prompt_messages=at_messages,
                tools=at_tools,
                prefix=tree.prefix(x) if prefix is None else prefix,
                chosen=tree.text(hi),
                rejected=tree.text(lo),
                chosen_token_ids=tree.token_ids(hi),
                rejected_token_ids=tree.token_ids(lo),
                chosen_q=Q[hi],
                rejected_q=Q[lo],
                chosen_n=N[hi],
                rejected_n=N[lo],
                tree_id=tree.tree_id,
                node_id=x,
                depth=tree.depth(x),
                policy_version=tree.version(hi),
                prefix_token_ids=(
                    tree.prefix_token_ids(x) if env is None or env.unit == "call" else ()
                ),
                chosen_o=tree.outcome(hi),
                rejected_o=tree.outcome(lo),
                chosen_reach=reach[hi],
                rejected_reach=reach[lo],
            )
        )
    return out


def terminal_reach(tree: Tree) -> list[float | None]:
    """Per node, the best outcome O of a terminal node in its subtree (itself included);
    None where no terminal below carries an outcome term. One pass, children after parents."""
    n = len(tree)
    best: list[float | None] = [None] * n
    term, outcome, parent = tree._term, tree._O, tree._parent
    for x in range(n - 1, -1, -1):
        if term[x] and outcome[x] is not None:
            o = outcome[x]
            best[x] = o if best[x] is None else max(best[x], o)
        if x and best[x] is not None:
            p = parent[x]
            best[p] = best[x] if best[p] is None else max(best[p], best[x])
    return best


def pair_stats(pairs: Sequence[Pair]) -> dict[str, float | int | None]:
    """What a set of pairs says about the search that made them: the mean Q gap chosen -
    rejected, and the fraction of pairs whose chosen step lies on a path to a correct
    terminal (reach 1.0) while the rejected step does not (a step with no scored terminal
    below it does not), and the other way round (the search preferring the wrong step).
    Fractions are over the pairs where at least one side has a scored terminal below it."""
    n = len(pairs)

    def ok(v: float | None) -> bool:
        return v is not None and v >= 1.0

    known = [p for p in pairs if p.chosen_reach is not None or p.rejected_reach is not None]
    m = len(known)
    good = sum(ok(p.chosen_reach) and not ok(p.rejected_reach) for p in known)
    bad = sum(ok(p.rejected_reach) and not ok(p.chosen_reach) for p in known)
    both = sum(ok(p.chosen_reach) and ok(p.rejected_reach) for p in known)
    return {
        "pairs": n,
        "mean_q_gap": sum(p.margin for p in pairs) / n if n else None,
        "with_reach": m,
        "chosen_only_reaches_correct": good / m if m else None,
        "rejected_only_reaches_correct": bad / m if m else None,
        "both_reach_correct": both / m if m else None,
    }


def split_by_tree(
    pairs: Sequence[Pair], heldout_fraction: float, seed: int = 0
) -> tuple[list[Pair], list[Pair]]:
    """(train, held-out): whole trees held out, so held-out pairs come from samples the
    training never saw. A tree is held out when a hash of (seed, tree id) falls below
    ``heldout_fraction``; with pairs from at least two trees and a fraction in (0, 1), at
    least one tree lands on each side (the tree with the lowest / highest hash moves)."""
    import hashlib

    if not 0.0 <= heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in [0, 1), got {heldout_fraction!r}")
    trees = sorted({p.tree_id for p in pairs})
    if heldout_fraction == 0.0 or len(trees) < 2:
        return list(pairs), []

    def u(tid: str) -> float:
        h = hashlib.blake2b(f"{seed}\x1f{tid}".encode(), digest_size=8).digest()
        return int.from_bytes(h, "little") / 2**64

    ranked = sorted(trees, key=u)
    held = {t for t in ranked if u(t) < heldout_fraction}
    if not held:
        held = {ranked[0]}
    if len(held) == len(ranked):
        held.discard(ranked[-1])
    return [p for p in pairs if p.tree_id not in held], [p for p in pairs if p.tree_id in held]
