"""Tier 3: the tiny random token UMM trained a few steps per stage end to end through the CLI: the loss is logged,
θ changed, ϕ stayed bit-identical, and the RLMT evaluator checkpoint is untouched."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from seer.backends.base import load_backend
from seer.backends.token_umm import tiny_random_backend
from seer.cli import main
from seer.data import Quadruplet, Sample, load_image, save_image, write_jsonl
from seer.prompts import DEFAULT_TEMPLATES

pytestmark = pytest.mark.slow

VERDICTS = ["<think> image A is red </think> <answer> A </answer>",
            "<think> image B is red </think> <answer> B </answer>"]
REPROMPTS = ["<think> ice is cold </think> <reprompt> a cat made of ice </reprompt>",
             "<think> red </think> <reprompt> a red cat </reprompt>", "<think> </think> <reprompt> a cat </reprompt>"]


def warm_start(backend, examples, steps=40):
    """Teach the random model the completion formats by teacher forcing, so the GRPO rewards have spread."""
    torch.manual_seed(0)
    opt = torch.optim.AdamW(backend.trainable_parameters(), lr=1e-2)
    batch = backend.collate([backend.encode_text_example(c, t) for c, t in examples])
    for _ in range(steps):
        loss = backend.model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        backend.after_optimizer_step()
    backend.set_reference()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    for i in range(4):
        save_image(root / "img" / f"{i}.png", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    quads = [Quadruplet("p1-0", 1, "", "a cat", "material_synthesis", "img/0.png", "img/1.png"),
             Quadruplet("p1-1", 1, "", "a red ball", "material_synthesis", "img/1.png", "img/2.png"),
             Quadruplet("p2-0", 2, "turn it into ice", "a cat", "material_synthesis", "img/2.png", "img/3.png"),
             Quadruplet("p2-1", 2, "make it red", "a dog", "semantic_edit", "img/3.png", "img/0.png")]
    write_jsonl(root / "quadruplets.jsonl", quads)
    write_jsonl(root / "samples.jsonl", [Sample("s0", "turn it into ice", "a cat", "material_synthesis"),
                                         Sample("s1", "make it red", "a dog", "semantic_edit")])
    backend = tiny_random_backend(seed=0)
    pair = (load_image(root / "img/0.png"), load_image(root / "img/1.png"))
    from seer.backends.base import Context

    ev = Context(DEFAULT_TEMPLATES.evaluator_text("make it red", "a cat"), pair)
    rp = DEFAULT_TEMPLATES.reprompt_text("turn it into ice", "a cat")
    warm_start(backend, [(ev, v) for v in VERDICTS] + [(rp, r) for r in REPROMPTS])
    backend.save(root / "base")
    return root


def theta_phi(path):
    b = load_backend(path)
    return [p.detach().clone() for p in b.trainable_parameters()], b.frozen_state()


def common_flags(world, name):
    return ["--output_dir", str(world / "runs"), "--name", name, "--group_size", "4", "--queries_per_step", "2",
            "--max_new_tokens", "16", "--sample_every", "1", "--seed", "1"]


def test_rlvr_then_rlmt_end_to_end_through_the_cli(world):
    run = world / "runs" / "e2e"
    assert main(["train", "rlvr", "--model", str(world / "base"), "--quadruplets", str(world / "quadruplets.jsonl"),
                 "--epochs_phase1", "2", "--epochs_phase2", "2", "--lr_phase1", "1e-3", "--lr_phase2", "1e-3",
                 *common_flags(world, "e2e")]) == 0
    metrics = [json.loads(x) for x in (run / "rlvr" / "metrics.jsonl").read_text().splitlines()]
    assert [m["phase"] for m in metrics] == [1, 1, 2, 2]
    assert all(np.isfinite(m["loss"]) for m in metrics)
    assert any(m["group_std_mean"] > 0 for m in metrics)  # the warm start gives the rewards spread
    assert list((run / "rlvr" / "tb").glob("events.out.tfevents.*"))
    base_theta, base_phi = theta_phi(world / "base")
    rlvr_theta, rlvr_phi = theta_phi(run / "rlvr" / "model")
    assert any(not torch.equal(a, b) for a, b in zip(base_theta, rlvr_theta, strict=True))  # θ changed
    assert all(torch.equal(base_phi[k], rlvr_phi[k]) for k in base_phi)  # ϕ bit-identical
    assert (run / "rlvr" / "phase1_model" / "backend.json").is_file()

    assert main(["train", "rlmt", "--evaluator", str(run / "rlvr"), "--samples", str(world / "samples.jsonl"),
                 "--epochs", "2", "--lr", "1e-3", *common_flags(world, "e2e")]) == 0
    metrics = [json.loads(x) for x in (run / "rlmt" / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 2 and all(np.isfinite(m["loss"]) for m in metrics)
    assert sum(m["time_images"] for m in metrics) > 0 and sum(m["time_judge"] for m in metrics) > 0
    rlmt_theta, rlmt_phi = theta_phi(run / "rlmt" / "model")
    assert any(not torch.equal(a, b) for a, b in zip(rlvr_theta, rlmt_theta, strict=True))
    assert all(torch.equal(base_phi[k], rlmt_phi[k]) for k in base_phi)
    after_theta, _ = theta_phi(run / "rlvr" / "model")  # the frozen evaluator's checkpoint is untouched
    assert all(torch.equal(a, b) for a, b in zip(rlvr_theta, after_theta, strict=True))
    samples = [json.loads(x) for x in (run / "rlmt" / "samples.jsonl").read_text().splitlines()]
    assert samples and all("reprompt" in s and "naive_prompt" in s for s in samples)
    meta = json.loads((run / "rlmt" / "meta.json").read_text())
    assert meta["derived"]["evaluator_dir"] == str(run / "rlvr" / "model") and meta["versions"]["torch"]


def test_reprompt_and_generate_commands(world, capsys, tmp_path):
    out = tmp_path / "x.png"
    assert main(["generate", "--model", str(world / "base"), "--prompt", "a red cat", "--seed", "3",
                 "--out", str(out)]) == 0
    assert load_image(out).shape == (16, 16, 3)
    pair = tmp_path / "pair.png"
    code = main(["reprompt", "--model", str(world / "base"), "--instruction", "turn it into ice", "--prompt", "a cat",
                 "--images", str(pair)])
    printed = capsys.readouterr().out
    assert code in (0, 1) and ("reprompt:" in printed or "did not follow" in printed)
    assert load_image(pair).shape == (16, 34, 3)  # naive | 2-px gap | reprompt
    assert main(["generate", "--model", str(tmp_path / "nothing"), "--prompt", "a cat", "--out", str(out)]) == 2


def test_wrong_image_size_for_the_model_is_caught_before_training(world, tmp_path):
    bad = tmp_path / "q.jsonl"
    save_image(tmp_path / "big.png", np.zeros((32, 32, 3), np.uint8))
    write_jsonl(bad, [Quadruplet("x", 1, "", "a cat", "material_synthesis", "big.png", "big.png")])
    assert main(["train", "rlvr", "--model", str(world / "base"), "--quadruplets", str(bad),
                 "--epochs_phase2", "0", *common_flags(world, "bad")]) == 2
    assert not (world / "runs" / "bad").exists()
    assert Path(world / "base" / "backend.json").is_file()


def test_contexts_without_room_for_the_completion_fail_the_dry_run(world, capsys):
    assert main(["train", "rlvr", "--model", str(world / "base"), "--quadruplets", str(world / "quadruplets.jsonl"),
                 *common_flags(world, "long"), "--max_new_tokens", "500", "--dry-run"]) == 2  # later flags win
    assert "plus max_new_tokens" in capsys.readouterr().err
    assert not (world / "runs" / "long").exists()
