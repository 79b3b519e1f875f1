"""Step-level MCTS for iTool (section 4): the pure search core.

No ray, vllm or torch here: the tree (``Tree``), PUCT (``puct_score``), expansion bookkeeping
(``merge_steps``), backup, in-flight selections, pair extraction (``extract_pairs``),
checkpoints, the one simulation core (``SimulationCore``: requests, R = w_o O + w_c C through
``Reward``, commit, terminal rollouts) and a one-process driver (``search``) over an ``Engine``
protocol. The Ray tree manager drives the same core asynchronously.
"""

from itool_ray.mcts.checkpoint import tree_from_dict, tree_to_dict
from itool_ray.mcts.config import MCTSConfig
from itool_ray.mcts.core import Reward, SimulationCore
from itool_ray.mcts.fake import FakeEngine, fake_outcome, make_fake_samples
from itool_ray.mcts.pairs import Pair, extract_pairs, pair_stats, split_by_tree, terminal_reach
from itool_ray.mcts.puct import effective_q, puct_score, select_child
from itool_ray.mcts.rewards import CallsOutcome
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
    "Reward",
    "RewardFn",
    "SearchResult",
    "SearchStats",
    "Searcher",
    "SimulationCore",
    "Step",
    "Tree",
    "effective_q",
    "extract_pairs",
    "fake_outcome",
    "make_fake_samples",
    "merge_steps",
    "no_outcome",
    "pair_stats",
    "puct_score",
    "request_seed",
    "search",
    "select_child",
    "split_by_tree",
    "tree_from_dict",
    "terminal_reach",
    "tree_to_dict",
]
