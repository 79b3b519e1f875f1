"""Samples, loaders (ToolACE, Seal-Tools, API-Bank, BFCL v3), difficulty buckets, the
warm-up / reinforcement split, prompt rendering and a ToolACE-style synthesizer.

Pure Python: no ray, vllm, torch or transformers import (``datasets`` is imported lazily by
:func:`load_toolace_hub` only).
"""

from itool_ray.data.api_bank import API_BANK_SPLITS, load_api_bank, parse_api_request
from itool_ray.data.bfcl import (
    BFCL_AST_CATEGORIES,
    BFCL_CATEGORIES,
    BFCL_IRRELEVANCE_CATEGORIES,
    NO_CALL_GOLD,
    load_bfcl,
)
from itool_ray.data.difficulty import (
    BUCKET_NAMES,
    RULES,
    DifficultyBuckets,
    DifficultyFeatures,
    bucket_by_difficulty,
    difficulty_features,
    difficulty_order,
    label_difficulty,
)
from itool_ray.data.errors import (
    DataError,
    LoadReport,
    LoadResult,
    OnError,
    SourceUnavailableError,
)
from itool_ray.data.jsonio import read_samples, write_samples
from itool_ray.data.paths import ENV_SHARED_DATA, bfcl_data_dir, shared_data_root
from itool_ray.data.prompt import (
    SELF_EVAL_CHOICES,
    SELF_EVAL_NO,
    SELF_EVAL_TEMPLATE,
    SELF_EVAL_YES,
    TOOLACE_SYSTEM_PROMPT,
    ChatTokenizer,
    build_messages,
    build_self_eval_messages,
    end_of_turn,
    prompt_and_completion,
    render_prompt,
    render_self_eval_prompt,
    system_prompt,
)
from itool_ray.data.sample import GroundTruth, Message, Sample, Tool
from itool_ray.data.seal_tools import (
    SEAL_SPLITS,
    load_seal_tools,
    load_seal_tools_pool,
    seal_tools_pool_tools,
)
from itool_ray.data.split import Split, split_warmup_reinforce
from itool_ray.data.synth import (
    DEFAULT_MODE_WEIGHTS,
    MODES,
    SynthConfig,
    SynthReport,
    SynthResult,
    check_synth_sample,
    synthesize,
)
from itool_ray.data.synth_pool import ToolSpec, spec_from_tool
from itool_ray.data.toolace import load_toolace, load_toolace_hub, parse_system_tools
from itool_ray.data.verify import is_grounded, verify_sample

__all__ = [
    "end_of_turn",
    "API_BANK_SPLITS",
    "BFCL_AST_CATEGORIES",
    "BFCL_CATEGORIES",
    "BFCL_IRRELEVANCE_CATEGORIES",
    "BUCKET_NAMES",
    "DEFAULT_MODE_WEIGHTS",
    "ENV_SHARED_DATA",
    "MODES",
    "NO_CALL_GOLD",
    "RULES",
    "SEAL_SPLITS",
    "SELF_EVAL_CHOICES",
    "SELF_EVAL_NO",
    "SELF_EVAL_TEMPLATE",
    "SELF_EVAL_YES",
    "TOOLACE_SYSTEM_PROMPT",
    "ChatTokenizer",
    "DataError",
    "DifficultyBuckets",
    "DifficultyFeatures",
    "GroundTruth",
    "LoadReport",
    "LoadResult",
    "Message",
    "OnError",
    "Sample",
    "SourceUnavailableError",
    "Split",
    "SynthConfig",
    "SynthReport",
    "SynthResult",
    "Tool",
    "ToolSpec",
    "bfcl_data_dir",
    "bucket_by_difficulty",
    "build_messages",
    "build_self_eval_messages",
    "check_synth_sample",
    "difficulty_features",
    "difficulty_order",
    "is_grounded",
    "label_difficulty",
    "load_api_bank",
    "load_bfcl",
    "load_seal_tools",
    "load_seal_tools_pool",
    "load_toolace",
    "load_toolace_hub",
    "parse_api_request",
    "parse_system_tools",
    "prompt_and_completion",
    "read_samples",
    "render_prompt",
    "render_self_eval_prompt",
    "seal_tools_pool_tools",
    "shared_data_root",
    "spec_from_tool",
    "split_warmup_reinforce",
    "synthesize",
    "system_prompt",
    "verify_sample",
    "write_samples",
]
