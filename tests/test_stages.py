"""Tier 2: the stages' wiring through the backend protocol, on the stub backend (tests/stub_backend.py)."""

import json
from pathlib import Path

import pytest
import torch
from stub_backend import IX, StubBackend, judge, write_stub_data

from seer.backends.base import Context, SamplingParams
from seer.cli import main
from seer.config import ConfigError, RLMTConfig, RLVRConfig, load_config
from seer.data import DataError, Sample
from seer.stages import common, rlmt, rlvr

TIME_KEYS = {f"time_{k}" for k in common.TIME_KEYS} | {"samples_per_s"}


@pytest.fixture
def data(tmp_path):
    return write_stub_data(tmp_path)


def rlvr_cfg(data, *flags, **kw):
    base = {"model": str(data["base"]), "quadruplets": str(data["quadruplets"]), "output_dir": str(data["runs"]),
            "group_size": 4, "queries_per_step": 3, "epochs_phase1": 2, "epochs_phase2": 2, "lr_phase1": 0.1,
            "lr_phase2": 0.03, "sample_every": 1, "save_every": 100, "tensorboard": False, **kw}
    return load_config(RLVRConfig, None, [*[t for k, v in base.items() for t in (f"--{k}", str(v))], *flags])


def rlmt_cfg(data, *flags, **kw):
    base = {"evaluator": str(data["judge"]), "samples": str(data["samples"]), "output_dir": str(data["runs"]),
            "group_size": 4, "queries_per_step": 3, "epochs": 2, "lr": 0.1, "sample_every": 1,
            "tensorboard": False, **kw}
    return load_config(RLMTConfig, None, [*[t for k, v in base.items() for t in (f"--{k}", str(v))], *flags])


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def theta(path):
    return torch.load(Path(path) / "stub.pt")["policy"]


def test_curriculum_switches_phase_lr_and_data(data):
    run_dir = rlvr.train(rlvr_cfg(data))
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    # 6 phase-1 quadruplets / 3 per step x 2 epochs = 4 steps, then 4 phase-2 ones = 2 batches x 2 epochs
    assert [m["phase"] for m in metrics] == [1] * 4 + [2] * 4
    assert {m["lr"] for m in metrics if m["phase"] == 1} == {0.1}
    assert {m["lr"] for m in metrics if m["phase"] == 2} == {0.03}
    samples = read_jsonl(run_dir / "samples.jsonl")
    for s in samples:
        phase = next(m["phase"] for m in metrics if m["step"] == s["step"])
        assert s["query_id"].startswith(f"q{phase}-") and s["phase"] == phase
    assert {s["label"] for s in samples} == {"A", "B"}  # the pair is shuffled
    # after phase 1 the checkpoint was saved, and phase 2 moved θ further
    p1, final = theta(run_dir / "phase1_model"), theta(run_dir / "model")
    assert not torch.equal(p1["cond"], final["cond"])
    assert {"loss", "kl", "clip_fraction", "zero_spread_fraction", "truncation_rate", "format_failure_rate",
            "group_std_mean", "completion_length_mean", "time_rollout", "time_update", "samples_per_s",
            } <= set(metrics[0])


def test_rlvr_labels_are_balanced(data):
    quads = [q for q in __import__("seer.data", fromlist=["x"]).load_quadruplets(data["quadruplets"])]
    images = rlvr.load_pair_images(data["quadruplets"], quads, (8, 8))
    labels = [rlvr.present_pair(quads[0], images, common.derive_seed(0, 0, 0, i))[1] for i in range(400)]
    assert 0.4 < labels.count("A") / len(labels) < 0.6
    pair, label = rlvr.present_pair(quads[0], images, 7)
    chosen = pair[0] if label == "A" else pair[1]
    assert chosen.mean() == 200  # the label names where the chosen (bright) image landed


def test_rlvr_both_orders_puts_each_pair_in_both_positions_within_a_group(data):
    from seer.data import load_quadruplets

    quads = load_quadruplets(data["quadruplets"])[:3]
    images = rlvr.load_pair_images(data["quadruplets"], quads, (8, 8))
    cfg = rlvr_cfg(data, "--both_orders", group_size=6)
    timings = __import__("collections").defaultdict(float)
    groups = rlvr.rollouts(StubBackend(), cfg, images, quads, [11, 12, 13], timings)
    for g in groups:
        labels = [i["label"] for i in g.info]
        assert labels.count("A") == labels.count("B") == 3 and g.extra_sums["label_is_A"] == 0.5
        ctxs = g.completion_contexts()
        assert len(ctxs) == 6 and ctxs[0].images[0] is ctxs[3].images[1] and ctxs[0].images[1] is ctxs[3].images[0]
        for ctx, label in zip(ctxs, labels, strict=True):  # the label names where the chosen (bright) image is
            assert ctx.images[0 if label == "A" else 1].mean() == 200
        for i, acc in zip(g.info, g.accuracy, strict=True):
            assert acc == float(i["verdict"] == i["label"])
    run_dir = rlvr.train(rlvr_cfg(data, "--both_orders", group_size=4, name="both"))
    assert (run_dir / "model" / "stub.pt").is_file()
    with pytest.raises(ConfigError, match="even group_size"):
        rlvr_cfg(data, "--both_orders", group_size=5)


def test_positive_advantage_raises_logprob():
    torch.manual_seed(0)
    backend = StubBackend()
    cfg = load_config(RLVRConfig, None, ["--model", "m", "--quadruplets", "q"])
    ctx = Context("<image> <image>", (torch.full((8, 8, 3), 200, dtype=torch.uint8).numpy(),
                                       torch.full((8, 8, 3), 40, dtype=torch.uint8).numpy()))
    comps = backend.generate_text([ctx], 8, SamplingParams(max_new_tokens=12), seed=1)[0]
    verdicts = [c.text.split("<answer>")[1].split()[0] if "<answer>" in c.text else None for c in comps]
    assert "A" in verdicts and "B" in verdicts
    rewards = [1.0 if v == "A" else 0.0 for v in verdicts]
    group = common.Group("q", ctx, comps, rewards, [1.0] * 8, rewards)

    def seq_logp():
        lp, mask = backend.token_logprobs([ctx] * 8, [c.token_ids for c in comps])
        return (lp * mask).sum(1).detach()

    before = seq_logp()
    opt = torch.optim.AdamW(backend.trainable_parameters(), lr=0.05, weight_decay=0.0)
    sums = common.grpo_update(backend, opt, [group], cfg, common.Dist(), n_global=1)
    after = seq_logp()
    for v, b, a in zip(verdicts, before, after, strict=True):
        if v == "A":
            assert a > b  # positive advantage: its log-prob went up
        elif v == "B":
            assert a < b
    assert sums["grad_norm"] > 0.0


def test_evaluator_verdict_drives_rlmt_reward(data):
    cfg = rlmt_cfg(data, group_size=8)
    policy = StubBackend()
    sample = Sample("s", "make it glow", "a cat", "material_synthesis")
    drawn = []
    original = policy.generate_images

    def spy(prompts, seeds):
        drawn.append((list(prompts), list(seeds)))
        return original(prompts, seeds)

    policy.generate_images = spy
    timings = __import__("collections").defaultdict(float)
    for prefer_brighter, winner in ((True, "bright"), (False, "dark")):
        g = rlmt.rollout(policy, judge(prefer_brighter), cfg, sample, seed=3, timings=timings)
        reprompts = [i.get("reprompt") for i in g.info]
        assert "bright" in reprompts and "dark" in reprompts
        for rp, acc, fmt, r in zip(reprompts, g.accuracy, g.format, g.reward, strict=True):
            if rp is None:
                assert acc == 0.0 and fmt == 0.0 and r == 0.0
            elif rp == winner:
                assert acc == 1.0 and r == 2.0
            elif rp in ("bright", "dark"):
                assert acc == 0.0 and r == 1.0
    # the baseline and every valid reprompt's image share one seed; only valid reprompts get an image
    prompts, seeds = drawn[0]
    assert prompts[0] == sample.naive_prompt and len(set(seeds)) == 1
    assert len(prompts) == 1 + sum(i.get("reprompt") is not None for i in g.info)


def test_rlmt_both_orders_and_self_judge(data):
    cfg = rlmt_cfg(data, "--judge_both_orders")
    sample = Sample("s", "make it glow", "a cat", "material_synthesis")
    timings = __import__("collections").defaultdict(float)
    g = rlmt.rollout(StubBackend(), judge(True), cfg, sample, seed=3, timings=timings)
    assert g.extra_sums["judgements"] == 2 * g.extra_sums["valid_reprompts"]
    for info, acc in zip(g.info, g.accuracy, strict=True):
        if info["reprompt"] in ("bright", "dark"):  # a clear difference: the same verdict in both orders
            assert acc == (1.0 if info["reprompt"] == "bright" else 0.0)
        elif info["reprompt"] == "cat":  # the same image as the baseline: the judge's position bias averages out
            assert acc == 0.5
    run_dir = rlmt.train(rlmt_cfg(data, "--self_judge", name="self"))
    assert (run_dir / "model" / "stub.pt").is_file()


def test_batched_rollouts_equal_one_query_at_a_time(data):
    cfg = rlmt_cfg(data, "--judge_both_orders", group_size=6)
    samples = [Sample("s0", "make it glow", "a cat", "material_synthesis"),
               Sample("s1", "make it dark", "a dog", "semantic_edit"),
               Sample("s2", "make it glow", "a red ball", "material_synthesis")]
    timings = __import__("collections").defaultdict(float)
    together = rlmt.rollouts(StubBackend(), judge(True), cfg, samples, [3, 4, 5], timings)
    alone = [rlmt.rollout(StubBackend(), judge(True), cfg, s, seed=k, timings=timings)
             for s, k in zip(samples, [3, 4, 5], strict=True)]
    for a, b in zip(together, alone, strict=True):
        assert (a.query_id, a.reward, a.info, a.extra_sums) == (b.query_id, b.reward, b.info, b.extra_sums)
        assert [c.token_ids for c in a.completions] == [c.token_ids for c in b.completions]


@pytest.mark.parametrize("stage", ["rlvr", "rlmt"])
def test_groups_per_forward_changes_speed_not_the_step(data, stage):
    make = rlvr_cfg if stage == "rlvr" else rlmt_cfg
    module = rlvr if stage == "rlvr" else rlmt
    one = module.train(make(data, name="one", groups_per_forward=1))
    every = module.train(make(data, name="all", groups_per_forward=0))
    a, b = theta(one / "model"), theta(every / "model")
    assert any(not torch.equal(a[k], theta(data["base"] if stage == "rlvr" else data["judge"])[k]) for k in a)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5)


def test_rlmt_trains_policy_and_keeps_evaluator(data):
    evaluator_before = theta(data["judge"])
    run_dir = rlmt.train(rlmt_cfg(data, epochs=4))
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    assert len(metrics) == 8 and all("win_rate_vs_naive" in m for m in metrics)
    start = sum(m["win_rate_vs_naive"] for m in metrics[:2]) / 2
    end = sum(m["win_rate_vs_naive"] for m in metrics[-2:]) / 2
    assert end > start  # the evaluator's preference for bright images taught the policy to write "bright"
    policy = theta(run_dir / "model")
    assert policy["table"][IX["<reprompt>"], IX["bright"]] > policy["table"][IX["<reprompt>"], IX["dark"]]
    evaluator_after = theta(data["judge"])
    assert all(torch.equal(evaluator_before[k], evaluator_after[k]) for k in evaluator_before)


def test_rlmt_generator_checkpoint_draws_every_image(data):
    # a generator whose ϕ draws "dark" bright and "bright" dark: judged by the same brightness-loving evaluator, the
    # policy must learn the word that wins under *this* generator, so every image came from it
    swapped = StubBackend()
    swapped.brightness[IX["bright"]], swapped.brightness[IX["dark"]] = 40.0, 200.0
    swapped.save(data["runs"].parent / "swapped")
    run_dir = rlmt.train(rlmt_cfg(data, epochs=4, generator=str(data["runs"].parent / "swapped")))
    policy = theta(run_dir / "model")
    assert policy["table"][IX["<reprompt>"], IX["dark"]] > policy["table"][IX["<reprompt>"], IX["bright"]]
    assert json.loads((run_dir / "meta.json").read_text())["derived"]["generator_dir"].endswith("swapped")
    with pytest.raises(ConfigError, match="generator .*not a seer checkpoint"):
        rlmt.train(rlmt_cfg(data, name="nogen", generator=str(data["runs"].parent / "nowhere")))


def strip_times(records):
    return [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in records]


@pytest.mark.parametrize("stage", ["rlvr", "rlmt"])
def test_resume_reproduces_uninterrupted_run(data, monkeypatch, stage):
    module = rlvr if stage == "rlvr" else rlmt

    def make(data, *flags, **kw):  # 8 steps in both stages
        return rlvr_cfg(data, *flags, **kw) if stage == "rlvr" else rlmt_cfg(data, *flags, epochs=4, **kw)

    straight = module.train(make(data, name="straight", save_every=3))

    # a run killed during step 6: the last checkpoint is at step 4 (RLVR: end of phase 1) or 3 (RLMT: save_every),
    # and the killed run had already written step 5's metrics
    original = module.rollouts
    calls = {"n": 0}
    per_step = 1  # one batched rollouts call per step

    def dying(*a, **k):
        calls["n"] += 1
        if calls["n"] > 5 * per_step:
            raise KeyboardInterrupt
        return original(*a, **k)

    monkeypatch.setattr(module, "rollouts", dying)
    with pytest.raises(KeyboardInterrupt):
        module.train(make(data, name="killed", save_every=3))
    monkeypatch.setattr(module, "rollouts", original)
    killed_dir = data["runs"] / "killed" / stage
    assert json.loads((killed_dir / "state" / "cursor.json").read_text())["step"] == (4 if stage == "rlvr" else 3)
    assert [m["step"] for m in read_jsonl(killed_dir / "metrics.jsonl")] == [1, 2, 3, 4, 5]
    with pytest.raises(ConfigError, match="already exists"):
        module.train(make(data, name="killed", save_every=3))
    resumed = module.train(make(data, "--resume", name="killed", save_every=3))
    assert strip_times(read_jsonl(resumed / "metrics.jsonl")) == strip_times(read_jsonl(straight / "metrics.jsonl"))
    assert read_jsonl(resumed / "samples.jsonl") == read_jsonl(straight / "samples.jsonl")
    a, b = theta(straight / "model"), theta(resumed / "model")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_threads_is_how_to_run_not_what(data):
    before = torch.get_num_threads()
    try:
        part = rlvr.train(rlvr_cfg(data, name="threads", max_steps=2, threads=1))
        assert torch.get_num_threads() == 1
        assert "threads" not in __import__("yaml").safe_load((part / "config.yaml").read_text())
        rlvr.train(rlvr_cfg(data, "--resume", name="threads", max_steps=3, threads=2))  # not a config change
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError, match="threads must be >= 0"):
        rlvr_cfg(data, threads=-1)


def test_resume_with_stop_and_changed_config(data):
    full = rlvr.train(rlvr_cfg(data, name="full"))
    part = rlvr.train(rlvr_cfg(data, name="part", max_steps=3))
    assert len(read_jsonl(part / "metrics.jsonl")) == 3
    with pytest.raises(ConfigError, match="lr_phase2"):
        rlvr.train(rlvr_cfg(data, "--resume", name="part", lr_phase2=0.5))
    rlvr.train(rlvr_cfg(data, "--resume", name="part"))
    assert strip_times(read_jsonl(part / "metrics.jsonl")) == strip_times(read_jsonl(full / "metrics.jsonl"))
    a, b = theta(full / "model"), theta(part / "model")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_config_errors(data, tmp_path):
    with pytest.raises(ConfigError, match="unknown config key 'lr'.*lr_phase1"):
        rlvr_cfg(data, "--lr", "1e-3")
    with pytest.raises(ConfigError, match="'group_size' expects int, got 'eight'"):
        rlvr_cfg(data, "--group_size", "eight")
    with pytest.raises(ConfigError, match="group_size must be >= 2"):
        rlvr_cfg(data, "--group_size", "1")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: m\nquadruplets: q\nbeta: [1]\n")
    with pytest.raises(ConfigError, match=r"r.yaml:3: key 'beta' expects float, got \[1\]"):
        load_config(RLVRConfig, recipe)
    recipe.write_text("model: m\nquadruplets: q\ntemplates:\n  reprompt: 'no fields'\n  colour: red\n")
    with pytest.raises(ConfigError, match="unknown config key 'templates.colour'"):
        load_config(RLVRConfig, recipe)
    recipe.write_text("model: m\nquadruplets: q\nlr_phase1: 1e-4\ntemplates:\n  system: ''\n")
    cfg = load_config(RLVRConfig, recipe, ["--lr_phase1", "2e-4"])
    assert cfg.lr_phase1 == 2e-4 and cfg.templates.system == ""  # flags win; YAML's 1e-4 string is a float
    with pytest.raises(ConfigError, match="evaluator is required"):
        load_config(RLMTConfig, None, ["--samples", "s"])
    with pytest.raises(ConfigError, match="no checkpoint to resume"):
        rlvr.train(rlvr_cfg(data, "--resume", name="never"))


def test_bad_inputs_fail_before_anything_is_written(data, tmp_path):
    good = rlvr.train(rlvr_cfg(data, name="keep", max_steps=1))
    before = sorted(p.name for p in good.iterdir())
    bad = tmp_path / "bad.jsonl"
    bad.write_text(data["quadruplets"].read_text().replace('"phase": 2', '"phase": 3', 1))
    with pytest.raises(DataError, match=r"bad.jsonl:7: field 'phase' is 3"):
        rlvr.train(rlvr_cfg(data, "--overwrite", name="keep", quadruplets=str(bad)))
    assert sorted(p.name for p in good.iterdir()) == before  # --overwrite deleted nothing
    # an image of the wrong shape names the record and the expected size
    from seer.data import save_image

    save_image(data["quadruplets"].parent / "img" / "dark.png", torch.zeros(4, 4, 3, dtype=torch.uint8).numpy())
    with pytest.raises(DataError, match=r"record 'q1-0' field 'image_rejected'.*expected 8x8"):
        rlvr.train(rlvr_cfg(data, name="other"))
    assert not (data["runs"] / "other").exists()
    with pytest.raises(Exception, match="evaluator .*not a seer checkpoint"):
        rlmt.train(rlmt_cfg(data, evaluator=str(tmp_path)))


def test_dry_run_writes_nothing(data, capsys):
    assert main(["train", "rlvr", "--model", str(data["base"]), "--quadruplets", str(data["quadruplets"]),
                 "--output_dir", str(data["runs"]), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "everything validated" in out and '"phase1_quadruplets": 6' in out
    assert main(["train", "rlmt", "--evaluator", str(data["judge"]), "--samples", str(data["samples"]),
                 "--output_dir", str(data["runs"]), "--dry-run"]) == 0
    assert not data["runs"].exists()


def test_cli_errors_are_clean(data, capsys):
    assert main(["train", "rlvr", "--model", str(data["base"]), "--quadruplets", str(data["quadruplets"]),
                 "--epsilon", "big"]) == 2
    assert "key 'epsilon' expects float, got 'big'" in capsys.readouterr().err
    assert main(["train", "rlmt", "--help"]) == 0
    assert "--judge_both_orders" in capsys.readouterr().out


def test_a_moving_generator_is_caught_at_the_checkpoint(data, monkeypatch):
    def leaky_step(self):
        self.brightness = self.brightness + 1.0  # a bug that lets ϕ drift

    monkeypatch.setattr(StubBackend, "after_optimizer_step", leaky_step)
    with pytest.raises(RuntimeError, match="ϕ changed"):
        rlvr.train(rlvr_cfg(data, save_every=2))


def test_reprompt_command_uses_the_run_templates(data, tmp_path):
    from seer.prompts import DEFAULT_TEMPLATES
    from seer.stages.cli import run_templates

    run_dir = rlmt.train(rlmt_cfg(data, "--templates.system", "reason first", name="tpl", max_steps=1))
    assert run_templates(run_dir).system == "reason first"
    assert run_templates(run_dir / "model").system == "reason first"
    assert run_templates(data["base"]) == DEFAULT_TEMPLATES
