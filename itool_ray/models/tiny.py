"""A tiny Llama-architecture model with its own byte-level BPE tokenizer, for fast tests.

Random weights, so it produces gibberish, but it exercises every real code path (transformers,
vLLM loading and sampling, LoRA, TRL training) in seconds on a CPU. Deterministic for a seed.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from itool_ray.models.registry import is_complete, save_model_folder

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


@dataclass(frozen=True)
class TinyModelSpec:
    """Shape of the tiny model. head_dim = hidden_size / num_attention_heads = 32, a size
    every vLLM attention backend supports."""

    vocab_size: int = 2048
    hidden_size: int = 128
    intermediate_size: int = 256
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 4096
    seed: int = 0

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("hidden_size must be a multiple of num_attention_heads")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        if self.vocab_size < 300:
            raise ValueError("vocab_size must be >= 300 (256 byte symbols + specials + merges)")


def default_corpus(seed: int = 0, n: int = 400) -> list[str]:
    """Tool-use flavoured text: tool JSON, call lists, chat markers and plain sentences."""
    rng = random.Random(seed)
    names = ["get_weather", "Market Trends API", "math.factorial", "search-flights", "convert"]
    keys = ["city", "country", "number", "date", "limit", "unit", "query", "trend_type"]
    values = ['"Paris"', '"us"', "5", "-3", "2.5", "True", "None", '["a", "b"]', '{"k": 1}']
    words = [
        "the",
        "a",
        "of",
        "to",
        "and",
        "is",
        "in",
        "for",
        "you",
        "what",
        "can",
        "I",
        "please",
        "find",
        "show",
        "me",
        "weather",
        "price",
    ]
    out = []
    for _ in range(n):
        calls = ", ".join(
            f"{rng.choice(names)}({rng.choice(keys)}={rng.choice(values)})"
            for _ in range(rng.randint(1, 3))
        )
        tool = {
            "name": rng.choice(names),
            "description": " ".join(rng.choices(words, k=6)),
            "parameters": {
                "type": "dict",
                "properties": {rng.choice(keys): {"type": "string"}},
                "required": [],
            },
        }
        out.append(f"[{calls}]")
        out.append(json.dumps(tool))
        out.append(" ".join(rng.choices(words, k=12)).capitalize() + ".")
    return out


def _train_tokenizer(corpus: Iterable[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def build_tiny_model(
    out_dir: Path | str, spec: TinyModelSpec | None = None, corpus: Iterable[str] | None = None
) -> Path:
    """Build (once) the tiny model and tokenizer into ``out_dir``; return the folder.

    A folder already built with the same spec is reused; a different spec rebuilds it.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    spec = spec or TinyModelSpec()
    out = Path(out_dir)
    spec_json = json.dumps(asdict(spec), sort_keys=True)
    if is_complete(out) and (out / ".itool-complete").read_text() == spec_json:
        return out
    tokenizer = _train_tokenizer(corpus or default_corpus(spec.seed), spec.vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        max_position_embeddings=spec.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(spec.seed)
    model = LlamaForCausalLM(config).to(torch.float32)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return save_model_folder(model, tokenizer, out, spec_json)
