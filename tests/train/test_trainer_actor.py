"""The trainer actor through its driver-side client (real Ray actor, tiny model): the job's
calls go through ``TrainerClient`` methods, training calls through its ``wait``."""

from __future__ import annotations

import pytest

from itool_ray.actors import actor_options
from itool_ray.train import hf_perplexity


def test_actor_options_set_only_what_is_given():
    opts = actor_options(num_cpus=2, max_restarts=1, max_concurrency=64)
    assert opts == {"num_cpus": 2, "max_restarts": 1, "max_concurrency": 64}
    full = actor_options(
        num_cpus=1, num_gpus=1, resources={"trainer_slot": 1}, env={"A": "1"}, name="t"
    )
    assert full["num_gpus"] == 1 and full["resources"] == {"trainer_slot": 1}
    assert full["runtime_env"] == {"env_vars": {"A": "1"}} and full["name"] == "t"


def test_trainer_client_runs_each_call_on_the_actor(
    ray_local, tiny_model_dir, sft_run, samples, tmp_path
):
    from itool_ray.rollout.replica import adapter_payload
    from itool_ray.train import SFTSettings
    from itool_ray.train.trainer import start_trainer

    waited: list[str] = []

    def wait(ref, out_dir):
        waited.append(out_dir)
        return ray_local.get(ref)

    trainer = start_trainer(str(tiny_model_dir), num_cpus=1, env={}, wait=wait)
    try:
        here = hf_perplexity(tiny_model_dir, sft_run.adapter_dir, samples[:3])
        there = trainer.perplexity(sft_run.adapter_dir, samples[:3])
        assert there == pytest.approx(here, rel=1e-4)
        # the payload stays in the object store: the client hands back its reference
        ref = trainer.publish(sft_run.adapter_dir)
        assert ray_local.get(ref) == adapter_payload(sft_run.adapter_dir)
        with pytest.raises(Exception, match="adapter_config.json"):
            ray_local.get(trainer.publish(str(tmp_path)))
        out = str(tmp_path / "sft")
        settings = SFTSettings(max_steps=1, batch_size=1, max_length=1024, cpu_threads=1)
        result = trainer.warmup_sft(samples, out, settings)
        assert waited == [out] and result["adapter_dir"].startswith(out)
        merged = trainer.export_merged(sft_run.adapter_dir, str(tmp_path / "merged"))
        assert (tmp_path / "merged" / "config.json").is_file() and merged.endswith("merged")
    finally:
        trainer.kill()


def test_sft_too_short_for_every_answer_names_the_setting(tiny_model_dir, samples, tmp_path):
    from itool_ray.train import SFTSettings, warmup_sft

    settings = SFTSettings(max_steps=1, batch_size=1, max_length=16, cpu_threads=1)
    with pytest.raises(ValueError, match=r"bucket 'easy'.*train.sft.max_length=16"):
        warmup_sft(tiny_model_dir, samples, tmp_path, settings)
