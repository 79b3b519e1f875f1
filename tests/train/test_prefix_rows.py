"""A conversation's earlier messages are trained and scored inside its last message's row
(itool_ray.data.prefix), with the same tokens, labels and log-probs as one at a time: the tiny
model, real TRL collation, the trainer's perplexity."""

from __future__ import annotations

import pytest
import torch

from itool_ray.data import Sample, render_prompt
from itool_ray.train import SFTSettings, build_sft_dataset, make_sft_trainer
from itool_ray.train._common import encode, end_of_turn, load_policy

from .conftest import THREADS, TIME, WEATHER


def conversation(cid: str, city: str, zone: str) -> list[Sample]:
    """Three assistant messages of one task: a call, a second call after its result, a close."""
    tools = (WEATHER, TIME)
    user = {"role": "user", "content": f"Weather in {city}, then the time in {zone}."}
    first = f'[get_weather(city="{city}")]'
    second = f'[get_time(zone="{zone}")]'
    m1 = (user,)
    m2 = (*m1, {"role": "assistant", "content": first}, {"role": "tool", "content": "sunny"})
    m3 = (*m2, {"role": "assistant", "content": second}, {"role": "tool", "content": "09:30"})
    golds = (first, second, "Sunny, and it is 09:30.")
    return [
        Sample(id=f"{cid}#{i}", tools=tools, messages=m, gold=g)
        for i, (m, g) in enumerate(zip((m1, m2, m3), golds, strict=True))
    ]


@pytest.fixture(scope="module")
def talks() -> list[Sample]:
    return conversation("a", "Paris", "Europe/Paris") + conversation("b", "Oslo", "Europe/Oslo")


def test_a_conversation_is_one_sft_row_whose_labels_are_every_message(tokenizer, talks):
    eot = end_of_turn(tokenizer)
    rows = build_sft_dataset(talks, tokenizer)
    assert rows["covers"] == [["a#0", "a#1", "a#2"], ["b#0", "b#1", "b#2"]]
    assert rows["id"] == ["a#2", "b#2"]
    for row, mask, ids in zip(
        rows["input_ids"], rows["completion_mask"], rows["covers"], strict=True
    ):
        by_id = {s.id: s for s in talks}
        want = [0] * len(row)
        for sid in ids:  # each message's own row is a prefix, its response marked in place
            s = by_id[sid]
            prompt = encode(tokenizer, render_prompt(s, tokenizer))
            response = encode(tokenizer, s.gold + eot)
            assert row[: len(prompt) + len(response)] == prompt + response
            want[len(prompt) : len(prompt) + len(response)] = [1] * len(response)
        assert mask == want


def test_the_collated_row_labels_every_message_and_the_recorder_sees_them_all(
    tiny_model_dir, tokenizer, talks, tmp_path
):
    from itool_ray.train import LoraSettings

    model = load_policy(tiny_model_dir, None, LoraSettings(), torch.float32)
    settings = SFTSettings(batch_size=1, max_length=1024, cpu_threads=THREADS)
    trainer = make_sft_trainer(
        model, tokenizer, build_sft_dataset(talks, tokenizer), settings, tmp_path
    )
    batches = list(trainer.get_train_dataloader())
    assert len(batches) == 2  # two rows for six samples
    covered = []
    for batch in batches:
        ids = trainer.recorder.pending.popleft()
        covered += ids
        labels = batch["labels"][0]
        by_id = {s.id: s for s in talks}
        host = by_id[ids[-1]]
        eot = end_of_turn(tokenizer)
        n = sum(len(encode(tokenizer, by_id[i].gold + eot)) for i in ids)
        assert int((labels != -100).sum()) == n  # three responses, nothing of the prompts
        assert ids[-1].endswith("#2") and host.gold.startswith("Sunny")
    assert sorted(covered) == sorted(s.id for s in talks)


def test_trainer_perplexity_of_a_conversation_equals_one_message_at_a_time(tiny_model_dir, talks):
    from itool_ray.train.perplexity import hf_perplexity

    together = hf_perplexity(tiny_model_dir, None, talks, threads=THREADS)
    alone = [hf_perplexity(tiny_model_dir, None, [s], threads=THREADS)[0] for s in talks]
    assert together == pytest.approx(alone, rel=1e-4)
