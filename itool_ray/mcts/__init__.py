"""Step-level MCTS for iTool (section 4): the pure search core.

No ray, vllm or torch here: the tree (``Tree``), PUCT (``puct_score``), expansion bookkeeping
(``merge_steps``), backup, in-flight selections, pair extraction (``extract_pairs``),
checkpoints, and a one-process driver (``search``) over an ``Engine`` protocol. The Ray tree
manager drives the same ``Tree.select / expand / backup / abandon`` cycle asynchronously.
"""

from itool_ray.mcts.checkpoint import tree_from_dict, tree_to_dict
from itool_ray.mcts.config import MCTSConfig
from itool_ray.mcts.fake import FakeEngine, fake_outcome, make_fake_samples
from itool_ray.mcts.pairs import Pair, extract_pairs
from itool_ray.mcts.puct import effective_q, puct_score, select_child
from itool_ray.mcts.rewards import CallsOutcome, combine_reward
from itool_ray.mcts.search import (
    Engine,
    EvalRequest,
    ExpandRequest,
    RewardFn,
    Searcher,
    SearchResult,
    SearchStats,
    no_outcome,
    request_seed,
    search,
)
from itool_ray.mcts.step import Step, merge_steps
from itool_ray.mcts.tree import Leaf, Tree

__all__ = [
    "CallsOutcome",
    "Engine",
    "EvalRequest",
    "ExpandRequest",
    "FakeEngine",
    "Leaf",
    "MCTSConfig",
    "Pair",
    "RewardFn",
    "SearchResult",
    "SearchStats",
    "Searcher",
    "Step",
    "Tree",
    "combine_reward",
    "effective_q",
    "extract_pairs",
    "fake_outcome",
    "make_fake_samples",
    "merge_steps",
    "no_outcome",
    "puct_score",
    "request_seed",
    "search",
    "select_child",
    "tree_from_dict",
    "tree_to_dict",
]
