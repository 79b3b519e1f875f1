"""Throughput of the ToolACE-style synthesizer (target: 10,000 samples in under 10 s).

Run:
    .venv/bin/python jobs/bench_synth.py                       # 10,000 samples, built-in pool
    .venv/bin/python jobs/bench_synth.py --pool seal-tools     # the 4,076-tool Seal-Tools pool
    .venv/bin/python jobs/bench_synth.py --num-samples 200 --repeat 1   # smoke

Reported, best of ``--repeat`` runs, in one process:

* verified: ``synthesize()`` as shipped (generation + the rule layer on every sample);
* baseline: the same generation with ``verify=False`` (no rule layer) - the ratio
  verified / baseline is the share of throughput the rule layer keeps;
* the run checks that both paths produce the same samples (the generator is deterministic
  and, with a sound generator, verification drops nothing).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import shlex
import sys
import time

from itool_ray.data import SynthConfig, seal_tools_pool_tools, synthesize


def timed(config: SynthConfig, pool, repeat: int):
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = synthesize(config, pool=pool)
        best = min(best, time.perf_counter() - start)
    return best, result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-samples", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pool", choices=("builtin", "seal-tools"), default="builtin")
    parser.add_argument("--json", action="store_true", help="print one JSON line only")
    args = parser.parse_args(argv)

    pool = seal_tools_pool_tools() if args.pool == "seal-tools" else None
    config = SynthConfig(num_samples=args.num_samples, seed=args.seed)
    t_verified, verified = timed(config, pool, args.repeat)
    t_baseline, baseline = timed(
        SynthConfig(**{**vars(config), "verify": False}), pool, args.repeat
    )
    if verified.samples != baseline.samples:
        raise SystemExit("verified and baseline runs differ: the rule layer dropped samples")

    out = {
        "command": shlex.join([sys.executable, *sys.argv]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''} py{platform.python_version()}",
        "pool": args.pool,
        "num_samples": len(verified),
        "verified_s": round(t_verified, 3),
        "verified_samples_per_s": round(len(verified) / t_verified),
        "baseline_s": round(t_baseline, 3),
        "baseline_samples_per_s": round(len(baseline) / t_baseline),
        "ratio_verified_to_baseline": round(t_baseline / t_verified, 3),
        "dropped": verified.report.dropped,
        "modes": verified.report.modes,
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(f"# {out['command']}  ({out['date']}, {out['machine']})")
        print(
            f"verified: {out['num_samples']} samples in {out['verified_s']} s "
            f"= {out['verified_samples_per_s']} samples/s (pool {args.pool}, best of {args.repeat})"
        )
        print(
            f"baseline (verify=False): {out['baseline_s']} s "
            f"= {out['baseline_samples_per_s']} samples/s; "
            f"verified/baseline throughput ratio {out['ratio_verified_to_baseline']}"
        )
        print(f"dropped {out['dropped']}; modes {out['modes']}")
    return out


if __name__ == "__main__":
    main()
