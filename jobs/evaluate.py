"""Benchmarks of a model (plus an optional LoRA adapter): BFCL v3 with the official checker,
multi-turn included, API-Bank level-1/2, Seal-Tools test_out_domain; JSON and Markdown.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/evaluate.py model=/models/Llama-3.1-8B-Instruct \
        adapter=/shared/runs/itool/iter3-dpo/adapter replicas.count=8 replicas.num_gpus=1 \
        'benchmarks={bfcl: null, api-bank: null, seal-tools: null}' out_dir=/shared/runs/eval

Locally (starts its own Ray on 127.0.0.1):

    .venv/bin/python jobs/evaluate.py model=tiny 'benchmarks={bfcl/simple: 2}' replicas.count=1

BFCL multi-turn alone (its prompts need SmolLM2's whole context), and the harness's
self-check, every entry answered with its gold and no engine (100 wherever BFCL's gold
is right; the gold it rejects is listed):

    .venv/bin/python jobs/evaluate.py model=smollm2 'benchmarks={bfcl/multi_turn: 20}' \
        engine.max_model_len=8192
    .venv/bin/python jobs/evaluate.py model=oracle 'benchmarks={bfcl: null}'

Options: ``--config FILE.yaml`` plus ``KEY.PATH=VALUE`` overrides (see
``itool_ray.eval.job.EvaluateConfig``); the configuration is validated before any actor
starts. Writes ``out_dir/results.json``, ``results.md`` and ``responses.jsonl``.
"""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def main(
    overrides: list[str] = typer.Argument(None, help="KEY.PATH=VALUE overrides"),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config file"),
) -> None:
    from itool_ray.config import load_job_config
    from itool_ray.eval.job import EvaluateConfig, run_evaluate_job

    cfg = load_job_config(EvaluateConfig, config, overrides)
    result = run_evaluate_job(cfg)
    print(Path(result["files"]["markdown"]).read_text())
    print("written:", ", ".join(result["files"].values()))


if __name__ == "__main__":
    app()
