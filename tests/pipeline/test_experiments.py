"""The experiments command's plumbing: shared stages are copied, rows and means are right."""

from __future__ import annotations

import json

import pytest

from itool_ray.config import ConfigError, load_config
from itool_ray.experiments import (
    ExperimentsConfig,
    _seed_from,
    itool_config,
    mean_accuracy,
    results_markdown,
    summarize,
)


def test_variants_start_from_the_main_runs_finished_stages(tmp_path):
    main, run = tmp_path / "itool", tmp_path / "loss-ipo"
    for name in ("data", "sft"):
        (main / name).mkdir(parents=True)
        (main / name / "DONE").write_text(json.dumps({"seconds": 1}))
        (main / name / "out.txt").write_text(name)
    (main / "iter1-mcts").mkdir()  # never finished: no marker
    _seed_from(main, run, ("data", "sft"))
    assert (run / "sft" / "out.txt").read_text() == "sft" and (run / "data" / "DONE").is_file()
    # a half-copied stage of the variant is replaced; an unfinished main stage is an error
    (run / "data" / "DONE").unlink()
    (run / "data" / "stale").write_text("x")
    _seed_from(main, run, ("data",))
    assert not (run / "data" / "stale").exists()
    with pytest.raises(RuntimeError, match="iter1-mcts .* did not finish"):
        _seed_from(main, run, ("iter1-mcts",))


def test_rows_means_and_markdown():
    row = {
        "version": 1,
        "synth": {"accuracy": 0.5, "n": 8},
        "bfcl/simple": {"accuracy": 0.25, "n": 4},
    }
    assert mean_accuracy(row) == pytest.approx(0.375)
    assert mean_accuracy({"version": 0}) is None
    result = {
        "date": "2026-11-30",
        "seed": 0,
        "seconds": {"itool": 12.0},
        "rows": {"base": row, "iTool iter 1 (DPO)": {**row, "pairs": 7}},
        "mean_accuracy": {"base": 0.375, "iTool iter 1 (DPO)": 0.375},
    }
    md = results_markdown(result)
    assert "| base | 0.500 (4/8) | 0.250 (1/4) | 0.375 | - |" in md
    assert "| iTool iter 1 (DPO) | 0.500 (4/8) | 0.250 (1/4) | 0.375 | 7 |" in md


def test_shared_itool_overrides_are_validated(tmp_path):
    cfg = load_config(ExperimentsConfig, None, ['itool=["mcts.k=2"]', "seed=3"])
    itool = itool_config(cfg, tmp_path / "r", "train.dpo.loss=ipo")
    assert (itool.mcts.k, itool.seed, itool.train.dpo.build().loss) == (2, 3, "ipo")
    bad = load_config(ExperimentsConfig, None, ['itool=["mcts.kk=2"]'])
    with pytest.raises(ConfigError, match="mcts"):
        itool_config(bad, tmp_path / "r")


def test_multi_turn_preset_gives_defaults_an_explicit_setting_overrides(tmp_path):
    from itool_ray.experiments import DEFAULT_ITOOL, MULTI_TURN_ITOOL, row_stages

    cfg = load_config(ExperimentsConfig, None, ["preset=multi-turn", f"run_dir={tmp_path}"])
    assert (cfg.iterations, cfg.mixed_sft, cfg.losses, cfg.one_step_search) == (1, False, [], False)
    assert cfg.itool == list(MULTI_TURN_ITOOL)
    assert list(row_stages(cfg)) == [
        "base",
        "easy-to-hard SFT",
        "iTool iter 1 (DPO)",
        "iter 1, graded outcome",
    ]
    itool = itool_config(cfg, tmp_path / "itool")
    assert itool.data.train == "synth-multi-turn" and itool.engine.max_model_len == 8192
    assert "bfcl/multi_turn_base" in itool.data.heldout
    assert itool.train.sft.build().gradient_checkpointing
    mine = load_config(
        ExperimentsConfig, None, ["preset=multi-turn", "iterations=2", 'itool=["mcts.k=2"]']
    )
    assert (mine.iterations, mine.itool) == (2, ["mcts.k=2"])
    plain = load_config(ExperimentsConfig, None, [])
    assert plain.itool == list(DEFAULT_ITOOL) and plain.iterations == 3 and plain.mixed_sft


def test_table_from_partial_runs(tmp_path):
    root = tmp_path / "exp"

    def done(path, **summary):
        path.mkdir(parents=True)
        (path / "DONE").write_text(json.dumps(summary))

    done(root / "itool" / "eval-base", version=0, synth={"accuracy": 0.25, "n": 8})
    done(root / "itool" / "eval-sft", version=1, synth={"accuracy": 0.5, "n": 8})
    done(root / "itool" / "iter1-eval", version=2, synth={"accuracy": 0.75, "n": 8})
    done(root / "itool" / "iter1-mcts", pairs=21)
    cfg = load_config(ExperimentsConfig, None, [f"run_dir={root}", "iterations=2"])
    result = summarize(cfg)
    rows = result["rows"]
    assert rows["iTool iter 1 (DPO)"]["pairs"] == 21 and rows["iTool iter 2 (DPO)"] is None
    assert rows["mixed SFT"] is None and rows["iter 1 with SIMPO"] is None
    md = (root / "results.md").read_text()
    assert "| iTool iter 1 (DPO) | 0.750 (6/8) | 0.750 | 21 |" in md
    assert "| iter 1 with ORPO | - | not run yet | - |" in md
    assert json.loads((root / "results.json").read_text())["mean_accuracy"]["base"] == 0.25


def test_intervals_and_paired_tests_from_per_record_results(tmp_path):
    from itool_ray.eval.stats import mcnemar_exact, wilson

    lo, hi = wilson(24, 60)
    assert lo == pytest.approx(0.2857, abs=1e-3) and hi == pytest.approx(0.5263, abs=1e-3)
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 10) == pytest.approx(2 / 2**10)
    assert mcnemar_exact(3, 7) == pytest.approx(mcnemar_exact(7, 3))

    root = tmp_path / "exp"
    ids = [f"r{i}" for i in range(40)]

    def stage(name, correct):
        path = root / "itool" / name
        path.mkdir(parents=True)
        recs = [
            {"id": r, "correct": r in correct, "gold_calls": 1 + (i % 2)} for i, r in enumerate(ids)
        ]
        (path / "results.json").write_text(json.dumps([{"name": "synth", "records": recs}]))
        (path / "DONE").write_text(
            json.dumps({"synth": {"accuracy": len(correct) / 40, "n": 40}, "_stage": {"x": 1}})
        )

    stage("eval-base", set(ids[:4]))
    stage("eval-sft", set(ids[:30]))  # right on 26 more records, wrong on none base got
    cfg = load_config(
        ExperimentsConfig, None, [f"run_dir={root}", "iterations=1", "mixed_sft=false", "losses=[]"]
    )
    result = summarize(cfg)
    sft = result["rows"]["easy-to-hard SFT"]
    assert sft["all"]["n"] == 40 and sft["all"]["correct"] == 30
    assert sft["hard"]["n"] == 20  # odd indices have 2 gold calls
    assert "_stage" not in sft
    (comp,) = result["comparisons"]
    assert (comp["a"], comp["b"], comp["only_a"], comp["only_b"]) == (
        "base",
        "easy-to-hard SFT",
        0,
        26,
    )
    assert comp["p_value"] == pytest.approx(2 / 2**26)
    md = (root / "results.md").read_text()
    assert "| base | easy-to-hard SFT | all | 40 | 4 | 30 | 0 | 26 | +65.0 pts |" in md


def test_verdicts_state_each_target_met_or_not_and_by_how_much():
    from itool_ray.experiments import verdicts

    def comp(a, b, records, n, a_ok, b_ok, only_a, only_b, p):
        return {
            "a": a,
            "b": b,
            "records": records,
            "n": n,
            "a_correct": a_ok,
            "b_correct": b_ok,
            "only_a": only_a,
            "only_b": only_b,
            "difference": (b_ok - a_ok) / n,
            "p_value": p,
        }

    score = {"n": 40, "accuracy": 0.35, "mean_margin": -0.1, "when": "after"}
    rows = {
        "base": {},
        "easy-to-hard SFT": {},
        "iTool iter 1 (DPO)": {
            "pairs": 129,
            "dpo": {"trained_pairs": {**score, "n": 89, "accuracy": 0.91}, "heldout_pairs": score},
        },
        "iTool iter 2 (DPO)": None,
        "iter 1 with IPO": {"pairs": 129, "dpo": {}},
    }
    comps = [
        comp("base", "easy-to-hard SFT", "all", 300, 8, 53, 8, 53, 3e-9),
        comp("easy-to-hard SFT", "iTool iter 1 (DPO)", "hard", 63, 4, 12, 0, 8, 0.0078),
        comp("easy-to-hard SFT", "iTool iter 1 (DPO)", "all", 300, 53, 59, 1, 7, 0.07),
        comp("iTool iter 1 (DPO)", "iter 1 with IPO", "all", 300, 59, 50, 12, 3, 0.035),
    ]
    out = {v["claim"]: v for v in verdicts({"rows": rows, "comparisons": comps})}
    sft = out["easy-to-hard SFT above base (all held-out records)"]
    assert sft["verdict"] == "not met" and "+15.0 pts" in sft["measured"]
    assert "5.0 pts short" in sft["measured"]  # significant, but short of +20
    assert out["iTool iter 1 (DPO): preference pairs from the search"]["verdict"] == "not met"
    trained = out["iTool iter 1 (DPO): pair accuracy after DPO, trained pairs"]
    assert trained["verdict"] == "met" and "(81/89)" in trained["measured"]
    held = out["iTool iter 1 (DPO): pair accuracy after DPO, held-out pairs"]
    assert held["verdict"] == "not met" and "[0.22, 0.50]" in held["measured"]
    assert out["iTool iter 2 (DPO): preference pairs from the search"]["verdict"] == "not run yet"
    hard = out["best iTool iteration above easy-to-hard SFT on the hard rows (2+ gold calls)"]
    assert hard["verdict"] == "met" and hard["measured"].startswith("iTool iter 1 (DPO)")
    assert out["best iTool iteration above easy-to-hard SFT on all records"]["verdict"] == "not met"
    # the other loss is B: DPO wins when B is lower
    assert out["DPO above IPO at iteration 1"]["verdict"] == "met"
    assert "easy-to-hard SFT above mixed SFT" not in out  # no mixed row configured


def test_error_kinds_of_answers_to_a_two_call_gold():
    from itool_ray.data import Sample
    from itool_ray.eval.scoring import error_kind

    gold = '[f(a=1), g(b="x")]'
    s = Sample(id="s", tools=(), messages=({"role": "user", "content": "q"},), gold=gold)
    assert error_kind(s, gold, True) == "correct"
    for answer, kind in (
        ("I cannot help", "not a call list"),
        ("[f(a=1), g(b=", "not a call list"),  # broken
        (None, "not a call list"),  # did not fit
        ("[f(a=1)]", "fewer calls"),
        ("[]", "fewer calls"),
        ('[f(a=1), g(b="x"), f(a=2)]', "more calls"),
        ('[f(a=1), f(b="x")]', "other functions"),
        ('[g(b="x"), f(a=2)]', "wrong arguments"),  # order is not what is wrong here
    ):
        assert error_kind(s, answer, False) == kind, answer
    text = Sample(id="t", tools=(), messages=s.messages, gold="No function fits.")
    with pytest.raises(ValueError, match="'t' has no gold calls"):
        error_kind(text, "[f(a=1)]", False)


def test_hard_rows_error_kinds_from_an_evaluation_stage(tmp_path):
    """``hard_error_kinds`` reads the stage's recorded answers by prompt and its run's
    held-out data; only 2+ call golds count; the table shows them per row."""
    from itool_ray.data import Sample, write_samples
    from itool_ray.eval.generate import request_key
    from itool_ray.experiments import hard_error_kinds

    root = tmp_path / "exp"
    msgs = lambda i: ({"role": "user", "content": f"q{i}"},)  # noqa: E731
    golds = ["[f(a=1), g(b=2)]", "[f(a=1), g(b=2)]", "[f(a=1), g(b=2)]", "[f(a=1)]"]
    samples = [Sample(id=f"r{i}", tools=(), messages=msgs(i), gold=g) for i, g in enumerate(golds)]
    (root / "itool" / "data").mkdir(parents=True)
    write_samples(root / "itool" / "data" / "heldout-synth.jsonl", samples)
    ev = root / "itool" / "eval-sft"
    ev.mkdir()
    answers = ["[f(a=1), g(b=2)]", "[f(a=1)]", "prose", "[h()]"]
    with (ev / "answers.partial.jsonl").open("w") as f:
        for s, a in zip(samples, answers, strict=True):
            f.write(json.dumps({"key": request_key(s), "text": a}) + "\n")
    recs = [
        {"id": s.id, "correct": i == 0, "gold_calls": 2 if i < 3 else 1}
        for i, s in enumerate(samples)
    ]
    (ev / "results.json").write_text(json.dumps([{"name": "synth", "records": recs}]))
    (ev / "DONE").write_text(json.dumps({"synth": {"accuracy": 0.25, "n": 4}}))
    kinds = hard_error_kinds(ev)
    assert kinds == {
        "correct": 1,
        "not a call list": 1,
        "fewer calls": 1,
        "more calls": 0,
        "other functions": 0,
        "wrong arguments": 0,
    }  # r3 (one gold call) is not a hard row
    cfg = load_config(
        ExperimentsConfig, None, [f"run_dir={root}", "iterations=1", "mixed_sft=false", "losses=[]"]
    )
    md = (root / "results.md").read_text() if summarize(cfg) else ""
    assert "| easy-to-hard SFT | 1 | 1 | 1 | 0 | 0 | 0 |" in md


def test_early_close_pairs_count_the_pairs_that_choose_stopping_short(tmp_path):
    """Only pairs where exactly one step closes the list (validly) with fewer calls than the
    gold count; a ``]`` inside an argument or a close at the gold's count is no early stop."""
    from itool_ray.data import Sample, write_samples
    from itool_ray.experiments import early_close_pairs
    from itool_ray.mcts.pairs import Pair

    select, mcts = tmp_path / "iter1-select", tmp_path / "iter1-mcts"
    select.mkdir()
    mcts.mkdir()
    two = Sample(id="t2", tools=(), messages=({"role": "user", "content": "q"},), gold="[f(), g()]")
    write_samples(select / "hard.jsonl", [two])

    def pair(prefix, chosen, rejected):
        return Pair((), (), prefix, chosen, rejected, (1,), (2,), 0.5, 0.1, 1, 1, "t2", 0, 0, 1)

    pairs = [
        pair("[f()", "]", ", g()]"),  # chooses the early stop
        pair("[f()", ", g()]", "]"),  # rejects it
        pair("[f(), g()", "]", ", h()]"),  # closes at the gold's count: not early
        pair("[f(a=[1]", ")]", "), g()]"),  # chooses the early stop after a nested list
        pair("[f(a=", "[1]", '"x"'),  # a "]" inside an argument closes nothing
        pair("[f()", "]", "]"),  # both stop early: no preference between them
        pair("[f()", "), ]", ", g()]"),  # an invalid close is no stop
    ]
    (mcts / "pairs.jsonl").write_text("".join(json.dumps(p.to_dict()) + "\n" for p in pairs))
    assert early_close_pairs(select, mcts) == {"pairs": 3, "chosen": 2}
    assert early_close_pairs(tmp_path / "none", mcts) is None


def test_dpo_epochs_rows_are_compared_with_one_epoch_on_the_same_records(tmp_path):
    from itool_ray.experiments import row_stages

    root = tmp_path / "exp"
    ids = [f"r{i}" for i in range(30)]

    def stage(run, name, correct):
        path = root / run / name
        path.mkdir(parents=True)
        recs = [{"id": r, "correct": r in correct, "gold_calls": 1} for r in ids]
        (path / "results.json").write_text(json.dumps([{"name": "synth", "records": recs}]))
        (path / "DONE").write_text(json.dumps({"synth": {"accuracy": len(correct) / 30, "n": 30}}))

    stage("itool", "iter1-eval", set(ids[:5]))
    stage("dpo-epochs-3", "iter1-eval", set(ids[:15]))  # 10 more right, none lost
    args = [f"run_dir={root}", "iterations=1", "mixed_sft=false", "losses=[]", "dpo_epochs=[3]"]
    cfg = load_config(ExperimentsConfig, None, [*args, "one_step_search=false"])
    assert row_stages(cfg)["iter 1, DPO 3 epochs"][2] == root / "dpo-epochs-3" / "iter1-dpo"
    result = summarize(cfg)
    (comp,) = [c for c in result["comparisons"] if c["b"] == "iter 1, DPO 3 epochs"]
    assert (comp["a"], comp["only_a"], comp["only_b"]) == ("iTool iter 1 (DPO)", 0, 10)
    (v,) = [v for v in result["verdicts"] if v["claim"] == "DPO 3 epochs above one epoch"]
    assert v["verdict"] == "met" and "p = 0.002" in v["measured"]
    assert load_config(ExperimentsConfig, None, []).dpo_epochs == [2]
    with pytest.raises(ConfigError, match="dpo_epochs"):
        load_config(ExperimentsConfig, None, ["dpo_epochs=[1]"])


def test_variants_are_iteration_1_rows_under_their_own_overrides(tmp_path):
    from itool_ray.experiments import row_stages, run_experiments, variant_dir

    cfg = load_config(ExperimentsConfig, None, [f"run_dir={tmp_path}"])
    assert cfg.variants["gamma 1"] == ["mcts.gamma=1.0"]
    assert cfg.variants["gamma 1 + graded outcome"] == ["mcts.gamma=1.0", "mcts.outcome=graded"]
    assert variant_dir("gamma 1") == "variant-gamma-1"
    assert variant_dir("gamma 1 + graded outcome") == "variant-gamma-1-graded-outcome"
    both = itool_config(cfg, tmp_path / "v", *cfg.variants["gamma 1 + graded outcome"])
    assert (both.mcts.gamma, both.mcts.outcome) == (1.0, "graded")
    stages = row_stages(cfg)
    assert stages["iter 1, gamma 1"][1] == tmp_path / "variant-gamma-1" / "iter1-mcts"
    itool = itool_config(cfg, tmp_path / "variant-gamma-1", *cfg.variants["gamma 1"])
    assert itool.mcts.gamma == 1.0
    assert load_config(ExperimentsConfig, None, ["preset=multi-turn"]).variants == {}
    with pytest.raises(ConfigError, match="share the run folder variant-a-b"):
        load_config(ExperimentsConfig, None, ["variants={a b: [], a/b: []}"])
    with pytest.raises(ConfigError, match="no letter or digit"):
        load_config(ExperimentsConfig, None, ["variants={'//': []}"])
    typo = load_config(
        ExperimentsConfig, None, [f"run_dir={tmp_path / 'x'}", "variants={g: [mcts.gama=1]}"]
    )
    with pytest.raises(ConfigError, match="gama"):
        run_experiments(typo)  # before any run starts
    assert not (tmp_path / "x").exists()


def test_a_variant_is_compared_with_iteration_1_on_all_and_hard_records(tmp_path):
    root = tmp_path / "exp"
    ids = [f"r{i}" for i in range(20)]

    def stage(run, correct, name="iter1-eval"):
        path = root / run / name
        path.mkdir(parents=True)
        recs = [{"id": r, "correct": r in correct, "gold_calls": 2} for r in ids]
        (path / "results.json").write_text(json.dumps([{"name": "synth", "records": recs}]))
        (path / "DONE").write_text(json.dumps({"synth": {"accuracy": len(correct) / 20, "n": 20}}))

    stage("itool", set(ids[:8]))
    stage("itool", set(ids[:2]), "eval-sft")
    stage("variant-gamma-1", set(ids[:6]))  # 2 fewer right than iteration 1, 4 more than SFT
    args = ["iterations=1", "mixed_sft=false", "losses=[]", "dpo_epochs=[]"]
    cfg = load_config(ExperimentsConfig, None, [f"run_dir={root}", *args])
    result = summarize(cfg)
    got = {(c["a"], c["b"], c["records"]): c for c in result["comparisons"]}
    for records in ("all", "hard"):
        assert got[("iTool iter 1 (DPO)", "iter 1, gamma 1", records)]["only_a"] == 2
        # SFT vs each iteration: every iteration-1 row is compared with SFT too
        vs_sft = got[("easy-to-hard SFT", "iter 1, gamma 1", records)]
        assert (vs_sft["only_a"], vs_sft["only_b"]) == (0, 4)
    assert len(got) == len(result["comparisons"]), "a comparison is listed twice"
    verdicts = {v["claim"]: v for v in result["verdicts"]}
    v = verdicts["gamma 1 above iteration 1"]
    assert v["verdict"] == "not met" and "-10.0 pts" in v["measured"]
    v = verdicts["gamma 1 above easy-to-hard SFT on all records"]
    assert v["verdict"] == "not met" and "+20.0 pts" in v["measured"]  # p = 0.125 with n = 4
    assert "gamma 1 above easy-to-hard SFT on the hard rows" in verdicts


def test_iteration_1_reruns_of_the_default_table_and_their_settings(tmp_path):
    from itool_ray.experiments import iteration1_runs

    cfg = load_config(ExperimentsConfig, None, [f"run_dir={tmp_path}"])
    assert iteration1_runs(cfg) == [
        ("iter 1 with SIMPO", "loss-simpo", ("train.dpo.loss=simpo", "train.dpo.beta=2.0")),
        ("iter 1 with IPO", "loss-ipo", ("train.dpo.loss=ipo", "train.dpo.beta=0.1")),
        ("iter 1 with ORPO", "loss-orpo", ("train.dpo.loss=orpo", "train.dpo.beta=0.1")),
        ("iter 1, one-step search", "one-step", ("mcts.rollout=one_step",)),
        ("iter 1, graded outcome", "graded", ("mcts.outcome=graded",)),
        ("iter 1, DPO 2 epochs", "dpo-epochs-2", ("train.dpo.epochs=2",)),
        ("iter 1, gamma 1", "variant-gamma-1", ("mcts.gamma=1.0",)),
        (
            "iter 1, gamma 1 + graded outcome",
            "variant-gamma-1-graded-outcome",
            ("mcts.gamma=1.0", "mcts.outcome=graded"),
        ),
        (
            "iter 1, gamma 1 + 10 simulations",
            "variant-gamma-1-10-simulations",
            ("mcts.gamma=1.0", "mcts.simulations=10"),
        ),
    ]
    mt = load_config(ExperimentsConfig, None, ["preset=multi-turn", f"run_dir={tmp_path}"])
    assert iteration1_runs(mt) == [("iter 1, graded outcome", "graded", ("mcts.outcome=graded",))]


def _multi_turn_stage(ev, sets, respond):
    """An evaluation stage of multi-turn sets as the iTool job writes it (recorded steps)."""
    from itool_ray.eval.generate import TURNS_FILE, recorded, score_multi_turn_sets

    ev.mkdir(parents=True)
    results = score_multi_turn_sets(sets, recorded(respond, ev / TURNS_FILE))
    (ev / "results.json").write_text(json.dumps([r.to_dict() for r in results]))
    (ev / "DONE").write_text(
        json.dumps({r.name: {"accuracy": r.accuracy, "n": r.n} for r in results})
    )
    return results


def test_multi_turn_play_from_results_or_replayed_from_the_recorded_steps(tmp_path):
    """``play_records`` reads how each entry was played from the results, or replays the
    recorded steps of results written without it and reaches the same detail; a replay that
    disagrees with the recorded verdicts raises, a step not recorded gives None. The table
    and a paired test on the first turn follow."""
    from itool_ray.envs import NO_CALL_TEXT, load_multi_turn
    from itool_ray.envs.synth_multi_turn import write_multi_turn
    from itool_ray.eval.generate import TURNS_FILE
    from itool_ray.eval.multi_turn import oracle_chat_responder
    from itool_ray.experiments import play_records

    root = tmp_path / "exp"
    entries = list(load_multi_turn("multi_turn_base")[:3])
    (root / "itool" / "data").mkdir(parents=True)
    write_multi_turn(root / "itool" / "data" / "mt-heldout-bfcl__multi_turn_base.jsonl", entries)
    sets = {"bfcl/multi_turn_base": entries}
    gold = oracle_chat_responder(entries[:1])

    def sft(prompts):  # the first entry's gold; elsewhere a valid and an unknown call
        return [
            gold([p])[0]
            if p.entry_id == entries[0].id
            else "[pwd(), nope()]"
            if p.step == 0
            else "Done."
            for p in prompts
        ]

    _multi_turn_stage(root / "itool" / "eval-base", sets, lambda ps: [NO_CALL_TEXT] * len(ps))
    (summary,) = _multi_turn_stage(root / "itool" / "eval-sft", sets, sft)
    ev = root / "itool" / "eval-sft"
    direct = play_records(ev)
    assert list(direct) == [f"bfcl/multi_turn_base/{e.id}" for e in entries]
    first = direct[f"bfcl/multi_turn_base/{entries[0].id}"]
    assert first["turns_passed"] == first["turns"] == entries[0].num_turns
    other = direct[f"bfcl/multi_turn_base/{entries[1].id}"]
    n = entries[1].num_turns  # every turn is played, as BFCL does, past the first failure
    assert (other["turns_passed"], other["calls"], other["refused"], other["unknown"]) == (
        0,
        2 * n,
        n,
        n,
    )

    written = json.loads((ev / "results.json").read_text())  # results from before the detail
    for part in written:
        part["records"] = [
            {k: r[k] for k in ("id", "correct", "gold_calls")} for r in part["records"]
        ]
    (ev / "results.json").write_text(json.dumps(written))
    assert play_records(ev) == direct

    cfg = load_config(ExperimentsConfig, None, [f"run_dir={root}", "preset=multi-turn"])
    result = summarize(cfg)
    assert result["rows"]["easy-to-hard SFT"]["play"]["first_turn_passed"] == 1
    (c,) = [c for c in result["comparisons"] if c["records"] == "first turn"]
    assert (c["a"], c["b"], c["n"], c["only_b"]) == ("base", "easy-to-hard SFT", 3, 1)
    md = (root / "results.md").read_text()
    t = sum(e.num_turns for e in entries)
    assert f"| easy-to-hard SFT | 3 | 1 (33%) | {entries[0].num_turns} of {t} |" in md

    wrong = json.loads((ev / "results.json").read_text())
    wrong[0]["records"][0]["correct"] = False
    (ev / "results.json").write_text(json.dumps(wrong))
    with pytest.raises(RuntimeError, match="does not reach the recorded verdicts"):
        play_records(ev)
    lines = (ev / TURNS_FILE).read_text().splitlines()
    (ev / TURNS_FILE).write_text("\n".join(lines[:-1]) + "\n")
    assert play_records(ev) is None


def test_iterations_from_the_mixed_sft_policy_are_rows_compared_with_both_sfts(tmp_path):
    from itool_ray.experiments import row_stages, run_folders, run_overrides, verdicts

    root = tmp_path / "exp"
    args = [f"run_dir={root}", "iterations=1", "losses=[]", "dpo_epochs=[]", "variants={}"]
    args += ["one_step_search=false", "graded_outcome=false"]
    cfg = load_config(ExperimentsConfig, None, args)
    assert cfg.mixed_iterations == 1  # the default
    assert run_overrides(cfg, "mixed-sft") == ("train.iterations=1", "train.sft.order=mixed")
    assert list(row_stages(cfg)) == [
        "base",
        "mixed SFT",
        "easy-to-hard SFT",
        "iTool iter 1 (DPO)",
        "mixed SFT + iTool iter 1",
    ]
    assert row_stages(cfg)["mixed SFT + iTool iter 1"][0] == root / "mixed-sft" / "iter1-eval"
    assert "mixed-sft" in run_folders(cfg)
    off = load_config(ExperimentsConfig, None, [*args, "mixed_sft=false"])
    assert off.mixed_iterations == 0  # nothing to start from: off with it
    with pytest.raises(ValueError, match="mixed_iterations"):
        load_config(ExperimentsConfig, None, [*args, "mixed_sft=false", "mixed_iterations=1"])

    ids = [f"r{i}" for i in range(30)]

    def stage(path, correct):
        path.mkdir(parents=True)
        recs = [{"id": r, "correct": r in correct, "gold_calls": 2} for r in ids]
        (path / "results.json").write_text(json.dumps([{"name": "synth", "records": recs}]))
        (path / "DONE").write_text(json.dumps({"synth": {"accuracy": len(correct) / 30, "n": 30}}))

    stage(root / "mixed-sft" / "eval-sft", set(ids[:5]))
    stage(root / "mixed-sft" / "iter1-eval", set(ids[:20]))
    stage(root / "itool" / "eval-sft", set(ids[:2]))
    result = summarize(cfg)
    comps = {(c["a"], c["b"], c["records"]): c for c in result["comparisons"]}
    c = comps[("mixed SFT", "mixed SFT + iTool iter 1", "hard")]
    assert (c["only_a"], c["only_b"]) == (0, 15)
    assert ("easy-to-hard SFT", "mixed SFT + iTool iter 1", "all") in comps
    claims = {v["claim"]: v["verdict"] for v in verdicts(result)}
    assert claims["mixed SFT + iTool iter 1 above mixed SFT on the hard rows"] == "met"
    # the SFT target is stated for either warm-up against base
    assert claims["mixed SFT above base (all held-out records)"] == "not run yet"
    stage(root / "itool" / "eval-base", set())
    result = summarize(cfg)
    comps = {(c["a"], c["b"], c["records"]): c for c in result["comparisons"]}
    assert comps[("base", "mixed SFT", "all")]["only_b"] == 5
    v = {v["claim"]: v for v in verdicts(result)}["mixed SFT above base (all held-out records)"]
    assert (
        v["verdict"] == "not met"
        and "+16.7 pts" in v["measured"]
        and "3.3 pts short" in v["measured"]
    )
