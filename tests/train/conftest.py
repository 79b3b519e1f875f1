"""Fixtures for the training tests: hand-written samples and pairs on the tiny model, and one
warm-up SFT run shared by the tests that need a trained adapter."""

from __future__ import annotations

import pytest

from itool_ray.data import Sample

THREADS = 2

WEATHER = {
    "name": "get_weather",
    "description": "Current weather in a city.",
    "parameters": {
        "type": "dict",
        "properties": {"city": {"type": "string", "description": "city name"}},
        "required": ["city"],
    },
}
TIME = {
    "name": "get_time",
    "description": "Local time in a time zone.",
    "parameters": {
        "type": "dict",
        "properties": {"zone": {"type": "string", "description": "IANA zone"}},
        "required": ["zone"],
    },
}
CONVERT = {
    "name": "convert",
    "description": "Convert an amount between currencies.",
    "parameters": {
        "type": "dict",
        "properties": {
            "amount": {"type": "number", "description": "amount"},
            "unit": {"type": "string", "description": "target currency"},
        },
        "required": ["amount", "unit"],
    },
}
CITIES = ["Paris", "Lima", "Oslo"]
ZONES = ["Europe/Paris", "America/Lima", "Europe/Oslo"]


def make_samples() -> list[Sample]:
    """Nine samples, three per difficulty level (1 tool / 1 call, 2 tools / 1 call,
    3 tools / 2 calls), so the difficulty buckets are exactly those three groups."""
    out = []
    for i, (city, zone) in enumerate(zip(CITIES, ZONES, strict=True)):
        out.append(
            Sample(
                id=f"easy-{i}",
                tools=(WEATHER,),
                messages=({"role": "user", "content": f"Weather in {city}?"},),
                gold=f'[get_weather(city="{city}")]',
            )
        )
        out.append(
            Sample(
                id=f"medium-{i}",
                tools=(WEATHER, TIME),
                messages=({"role": "user", "content": f"What time is it in {zone}?"},),
                gold=f'[get_time(zone="{zone}")]',
            )
        )
        out.append(
            Sample(
                id=f"hard-{i}",
                tools=(WEATHER, TIME, CONVERT),
                messages=({"role": "user", "content": f"Weather and time in {city}?"},),
                gold=f'[get_weather(city="{city}"), get_time(zone="{zone}")]',
            )
        )
    return out


@pytest.fixture(scope="session")
def samples() -> list[Sample]:
    return make_samples()


@pytest.fixture(scope="session")
def tokenizer(tiny_model_dir):
    from itool_ray.train._common import load_tokenizer

    return load_tokenizer(tiny_model_dir)


@pytest.fixture(scope="session", autouse=True)
def _few_threads():
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def sft_run(tiny_model_dir, samples, tmp_path_factory):
    """Easy-to-hard warm-up SFT, 2 epochs per bucket of 3 samples (batch 2: 4 steps each)."""
    from itool_ray.train import SFTSettings, warmup_sft

    settings = SFTSettings(lr=1e-2, batch_size=2, epochs=2, max_length=1024, cpu_threads=THREADS)
    return warmup_sft(tiny_model_dir, samples, tmp_path_factory.mktemp("sft"), settings)
