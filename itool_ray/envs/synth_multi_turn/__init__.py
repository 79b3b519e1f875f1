"""Executable multi-turn tasks over BFCL's eight classes, synthesized offline (pure, no eval).

Training data that is not the test set: :func:`synthesize_multi_turn` writes entries in the
shape :func:`~itool_ray.envs.bfcl_data.load_multi_turn` produces (:class:`MultiTurnEntry`,
category :data:`SYNTH_CATEGORY`), so the executor, the scorer and the pipeline take them
unchanged. Each entry has

* an ``initial_config`` for one or two involved classes (``MathAPI`` is stateless and only
  joins a stateful class, as in BFCL), drawn at random but valid for each class's
  ``_load_scenario``: a file tree with random folder / file names and contents, a trading
  account with random stocks, orders and watch list, a messaging workspace with random users
  and sent messages, a Twitter account with tweets and follows, a ticket queue, a travel
  profile with credit cards and bookings, a car's state;
* user turns written from templates (:data:`TEMPLATES`, each tied to the classes it calls)
  that state a goal in natural language with every value the calls need (names, quoted
  texts, credentials when the class is not logged in, told once per entry);
* the gold call list of each turn, built from the live state reached by the earlier turns
  and **verified by executing it** on the safe executor (:class:`World`): a turn whose calls
  give an error (``Error during execution``, an ``"error"`` key, a failure flag such as
  ``login_status: False``), that leaves the state unchanged when it should change it, or
  whose own check of the intended state fails is discarded and another template is drawn.
  A finished entry is replayed from its gold strings and must score valid with
  :func:`score_entry` on :func:`oracle_outputs`.

Disjoint from BFCL: no initial config (whole or per class) equal to one of BFCL's 1,000
multi-turn entries, and no user turn equal to or a near-duplicate of a BFCL query (normalised
text: lower case, letters and digits only; near: word-set Jaccard >=
:data:`NEAR_DUPLICATE_JACCARD`); drawn again otherwise. :func:`bfcl_overlaps` reports any.

Deterministic: one ``random.Random(seed)`` (no global state); entry ``i`` does not depend on
``n``, so a smaller ``n`` gives a prefix. :func:`write_multi_turn` / :func:`read_multi_turn`
keep entries as JSON lines in BFCL's record shape plus ``category`` and ``ground_truth``.

The modules: :mod:`.vocabulary` (word lists, class short names, text helpers),
:mod:`.scenarios` (the random initial configs, ``_SCENARIOS``), :mod:`.templating` (drafts, the
template context, failure detection, log-in sentences, the registry and its decorator),
``templates_<class>`` (the templates of one class, and those joining it to another; imported
here in the order they register, which is the order of :data:`TEMPLATES`), :mod:`.bfcl_index`
(disjointness from BFCL) and :mod:`.synthesis` (the entry writer, :func:`synthesize_multi_turn`,
the JSON lines).
"""

from __future__ import annotations

from collections.abc import Mapping

# isort: off
# The templates register at import: this order is the order of TEMPLATES (keep it).
from itool_ray.envs.synth_multi_turn import templates_fs  # noqa: F401
from itool_ray.envs.synth_multi_turn import templates_math  # noqa: F401
from itool_ray.envs.synth_multi_turn import templates_message  # noqa: F401
from itool_ray.envs.synth_multi_turn import templates_twitter  # noqa: F401
from itool_ray.envs.synth_multi_turn import templates_ticket  # noqa: F401
from itool_ray.envs.synth_multi_turn import templates_trading  # noqa: F401
from itool_ray.envs.synth_multi_turn import templates_travel  # noqa: F401
from itool_ray.envs.synth_multi_turn import templates_vehicle  # noqa: F401

# isort: on
from itool_ray.envs.synth_multi_turn.bfcl_index import (
    NEAR_DUPLICATE_JACCARD,
    bfcl_overlaps,
    normalise_query,
)
from itool_ray.envs.synth_multi_turn.bfcl_index import _bfcl_index as _bfcl_index
from itool_ray.envs.synth_multi_turn.scenarios import Scenario
from itool_ray.envs.synth_multi_turn.synthesis import (
    CROSS_FIRST,
    PAIR_FRACTION,
    SYNTH_CATEGORY,
    read_multi_turn,
    synthesize_multi_turn,
    write_multi_turn,
)
from itool_ray.envs.synth_multi_turn.synthesis import _draft_problem as _draft_problem
from itool_ray.envs.synth_multi_turn.templating import _REGISTRY
from itool_ray.envs.synth_multi_turn.templating import _Draft as _Draft
from itool_ray.envs.synth_multi_turn.templating import _failure as _failure
from itool_ray.envs.synth_multi_turn.templating import _value as _value

TEMPLATES: Mapping[str, frozenset[str]] = {t.name: t.classes for t in _REGISTRY}
"""Every template's name (``<classes>.<goal>``) and the classes its calls use."""

__all__ = [
    "CROSS_FIRST",
    "NEAR_DUPLICATE_JACCARD",
    "PAIR_FRACTION",
    "SYNTH_CATEGORY",
    "TEMPLATES",
    "Scenario",
    "bfcl_overlaps",
    "normalise_query",
    "read_multi_turn",
    "synthesize_multi_turn",
    "write_multi_turn",
]
