"""Lossless, compact (arrays, not objects), JSON-safe serialisation of a ``Tree``.

Only what cannot be derived is stored: parent, prior, R (and its terms O and C when known),
N, W, terminal flag, policy version, step text and token ids. Depth, token counts, children ranges, Q (= r + gamma * W / M, the same
float expression ``Tree.backup`` uses, so bit-identical) and the selectable-leaf counts are
rebuilt on load. In-flight state is never stored: a tree loads as if every outstanding
selection had been abandoned, which is exactly the state ``abandon`` would restore. Floats go
through ``repr`` in JSON and round-trip exactly. Selection has no randomness (ties go to the
lowest index), so no RNG state is needed for a resumed search to continue identically.
"""

from __future__ import annotations

from array import array
from typing import Any

from itool_ray.mcts.config import MCTSConfig
from itool_ray.mcts.tree import Tree

FORMAT = "itool-ray/mcts-tree/1"


def tree_to_dict(tree: Tree) -> dict[str, Any]:
    """The tree as plain lists; ``tree_from_dict`` inverts it."""
    n = len(tree)
    tok_len = [tree._tok_off[i + 1] - tree._tok_off[i] for i in range(n)]
    return {
        "format": FORMAT,
        "tree_id": tree.tree_id,
        "policy_version": tree.policy_version,
        "simulations": tree.simulations,
        "expansions": tree.expansions,
        "gamma": tree.config.gamma,
        "parent": list(tree._parent),
        "prior": list(tree._prior),
        "reward": list(tree._R),
        "visits": list(tree._N),
        "w": list(tree._W),
        "terminal": list(tree._term),
        "version": list(tree._ver),
        "text": list(tree._text),
        "tok_len": tok_len,
        "tokens": tree._tok.tolist(),
        "outcome": list(tree._O),
        "confidence": list(tree._C),
    }


def tree_from_dict(d: dict[str, Any], config: MCTSConfig) -> Tree:
    """Rebuild a tree saved by ``tree_to_dict``; ``config`` may raise the budget.

    Raises ValueError on an unknown format, inconsistent lengths, a parent that does not
    precede its child, non-contiguous siblings, or a gamma other than ``config.gamma`` (the
    stored Q values were discounted with it).
    """
    if d.get("format") != FORMAT:
        raise ValueError(f"tree_from_dict: unknown format {d.get('format')!r}")
    if float(d["gamma"]) != config.gamma:
        raise ValueError(
            f"tree_from_dict: tree was searched with gamma={d['gamma']}, config has {config.gamma}"
        )
    parent = [int(p) for p in d["parent"]]
    n = len(parent)
    cols = ("prior", "reward", "visits", "w", "terminal", "version", "text", "tok_len")
    for key in cols:
        if len(d[key]) != n:
            raise ValueError(f"tree_from_dict: {key!r} has {len(d[key])} entries, expected {n}")
    if n == 0 or parent[0] != -1:
        raise ValueError("tree_from_dict: node 0 must be the root (parent -1)")

    t = Tree(str(d["tree_id"]), config, policy_version=int(d["policy_version"]))
    t.simulations = int(d["simulations"])
    t.expansions = int(d.get("expansions", 0))
    for key, attr in (("outcome", "_O"), ("confidence", "_C")):  # optional: older trees lack it
        col = d.get(key)
        if col is None:
            col = [None] * n
        elif len(col) != n:
            raise ValueError(f"tree_from_dict: {key!r} has {len(col)} entries, expected {n}")
        setattr(t, attr, [None if v is None else float(v) for v in col])
    t._parent = parent
    t._prior = [float(v) for v in d["prior"]]
    t._R = [float(v) for v in d["reward"]]
    t._N = [int(v) for v in d["visits"]]
    t._W = [float(v) for v in d["w"]]
    t._term = bytearray(int(v) for v in d["terminal"])
    t._ver = [int(v) for v in d["version"]]
    t._text = [str(v) for v in d["text"]]
    t._tok = array("i", d["tokens"])
    tok_off = array("q", [0])
    for ln in d["tok_len"]:
        tok_off.append(tok_off[-1] + int(ln))
    if tok_off[-1] != len(t._tok):
        raise ValueError("tree_from_dict: tok_len does not add up to the token count")
    t._tok_off = tok_off
    _derive(t)
    return t


def _derive(t: Tree) -> None:
    n = len(t._parent)
    parent, tok_off = t._parent, t._tok_off
    depth = [0] * n
    ntok = [0] * n
    first = [0] * n
    count = [0] * n
    for x in range(1, n):
        p = parent[x]
        if not 0 <= p < x:
            raise ValueError(f"tree_from_dict: node {x} has parent {p}, expected 0 <= p < {x}")
        depth[x] = depth[p] + 1
        ntok[x] = ntok[p] + tok_off[x + 1] - tok_off[x]
        if count[p] == 0:
            first[p] = x
        elif first[p] + count[p] != x:
            raise ValueError(f"tree_from_dict: children of node {p} are not contiguous")
        count[p] += 1
    no_kids = range(0)
    kids = [range(first[x], first[x] + count[x]) if count[x] else no_kids for x in range(n)]
    g = t.config.gamma
    R, N, W = t._R, t._N, t._W
    r = [0.0] * n
    Q = [0.0] * n
    for x in range(1, n):  # the expressions Tree.backup uses, hence bit-identical values
        r[x] = R[x] - R[parent[x]]
        Q[x] = r[x] + g * (W[x] / (N[x] - 1)) if count[x] else r[x]
    opn = [0] * n
    revisit = 1 if t.config.revisit_terminals else 0
    term = t._term
    for x in range(n - 1, -1, -1):  # children have larger ids than their parent
        if not count[x]:
            opn[x] = revisit if term[x] else 1
        if x:
            opn[parent[x]] += opn[x]
    t._depth, t._ntok, t._kids, t._r, t._Q, t._open = depth, ntok, kids, r, Q, opn
    t._infl = [0] * n
    t.outstanding = 0
