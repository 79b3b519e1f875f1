"""Executable tool environments (pure: no ray, vllm or torch import).

BFCL v3 multi-turn: :mod:`~itool_ray.envs.bfcl_data` loads the entries,
:mod:`~itool_ray.envs.bfcl_exec` executes parsed calls on an entry's loaded classes without
``eval`` (:class:`World`, :func:`replay`), :mod:`~itool_ray.envs.bfcl_score` gives BFCL's
multi-turn verdict (:func:`score_entry`) and the gold answer (:func:`oracle_outputs`).
"""

from itool_ray.envs.bfcl_data import (
    KNOWN_CLASSES,
    MULTI_TURN_CATEGORIES,
    BfclEntryError,
    MultiTurnEntry,
    class_function_docs,
    entry_from_record,
    load_all_multi_turn,
    load_multi_turn,
)
from itool_ray.envs.bfcl_exec import (
    ERROR_PREFIX,
    MAX_CALLS_PER_STEP,
    GoldCallError,
    World,
    WorldCache,
    gold_calls,
    load_instances,
    parse_gold_call,
    replay,
    result_string,
)
from itool_ray.envs.bfcl_score import (
    MAX_STEPS_PER_TURN,
    NO_CALL_TEXT,
    MultiTurnVerdict,
    Undecoded,
    decode_step,
    gold_defects,
    oracle_outputs,
    score_entry,
    turn_progress,
)
from itool_ray.envs.bfcl_specs import (
    MAX_POWER_DIGITS,
    MAX_PRECISION,
    FunctionSpec,
    check_arguments,
    class_specs,
)

__all__ = [
    "ERROR_PREFIX",
    "KNOWN_CLASSES",
    "MAX_CALLS_PER_STEP",
    "MAX_POWER_DIGITS",
    "MAX_PRECISION",
    "MAX_STEPS_PER_TURN",
    "MULTI_TURN_CATEGORIES",
    "NO_CALL_TEXT",
    "BfclEntryError",
    "FunctionSpec",
    "GoldCallError",
    "MultiTurnEntry",
    "MultiTurnVerdict",
    "Undecoded",
    "World",
    "WorldCache",
    "check_arguments",
    "class_function_docs",
    "class_specs",
    "decode_step",
    "entry_from_record",
    "gold_calls",
    "gold_defects",
    "load_all_multi_turn",
    "load_instances",
    "load_multi_turn",
    "oracle_outputs",
    "parse_gold_call",
    "replay",
    "result_string",
    "score_entry",
    "turn_progress",
]
