"""``seer train rlvr`` and ``seer train rlmt --backend harmon`` on a tiny random Harmon, through the CLI: one real
step each (not a dry run) — the loss is finite and logged, ϕ stays bit-identical, the run writes a Harmon checkpoint
that loads — and the Harmon recipes carry the paper's values and dry-run on the tiny model.

The random model emits no formatted answers, so its rewards have no spread and GRPO's advantages are zero: θ moving
under a real reward is shown in test_harmon_backend.py (one GRPO step with given rewards), not here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from seer.backends.base import load_backend
from seer.backends.harmon import HarmonOptions, build_tiny_harmon, write_init_checkpoint
from seer.cli import main
from seer.config import RLMTConfig, RLVRConfig, load_config
from seer.data import Quadruplet, Sample, save_image, write_jsonl

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "harmon_1_5b"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("harmon_world")
    build_tiny_harmon(root / "tiny")
    rng = np.random.default_rng(0)
    for i in range(2):
        save_image(root / "img" / f"{i}.png", rng.integers(0, 256, (20, 20, 3), dtype=np.uint8))
    write_jsonl(root / "q.jsonl", [Quadruplet(f"q{p}", p, "make it red" if p == 2 else "", "a cat", "semantic_edit",
                                              "img/0.png", "img/1.png") for p in (1, 2)])
    write_jsonl(root / "s.jsonl", [Sample("s0", "make it red", "a cat", "semantic_edit")])
    return root


def flags(world, name):
    return ["--output_dir", str(world / "runs"), "--name", name, "--group_size", "2", "--queries_per_step", "1",
            "--max_new_tokens", "4", "--sample_every", "1", "--seed", "1", "--device", "cpu"]


def phi(path, kind=None):
    return load_backend(path, kind=kind).frozen_state()


@pytest.mark.slow
def test_rlvr_then_rlmt_through_the_cli_with_backend_harmon(world):
    tiny, run = world / "tiny", world / "runs" / "h"
    assert main(["train", "rlvr", "--backend", "harmon", "--model", str(tiny), "--quadruplets", str(world / "q.jsonl"),
                 "--epochs_phase1", "1", "--epochs_phase2", "1", *flags(world, "h")]) == 0
    metrics = [json.loads(x) for x in (run / "rlvr" / "metrics.jsonl").read_text().splitlines()]
    assert [m["phase"] for m in metrics] == [1, 2] and all(np.isfinite(m["loss"]) for m in metrics)
    base_phi, rlvr_phi = phi(tiny, "harmon"), phi(run / "rlvr" / "model")
    assert base_phi.keys() == rlvr_phi.keys() and all(torch.equal(base_phi[k], rlvr_phi[k]) for k in base_phi)
    assert json.loads((run / "rlvr" / "model" / "backend.json").read_text())["kind"] == "harmon"

    assert main(["train", "rlmt", "--backend", "harmon", "--evaluator", str(run / "rlvr"), "--samples",
                 str(world / "s.jsonl"), "--epochs", "1", *flags(world, "h")]) == 0
    metrics = [json.loads(x) for x in (run / "rlmt" / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 1 and np.isfinite(metrics[0]["loss"]) and metrics[0]["time_images"] > 0
    rlmt_phi = phi(run / "rlmt" / "model")
    assert all(torch.equal(base_phi[k], rlmt_phi[k]) for k in base_phi)
    samples = [json.loads(x) for x in (run / "rlmt" / "samples.jsonl").read_text().splitlines()]
    assert samples and all("reprompt" in s for s in samples)


def test_recipes_load_with_paper_values():
    rlvr = load_config(RLVRConfig, RECIPES / "rlvr.yaml", ["--model", "m", "--quadruplets", "q"])
    rlmt = load_config(RLMTConfig, RECIPES / "rlmt.yaml", ["--evaluator", "e", "--samples", "s"])
    for cfg in (rlvr, rlmt):
        assert cfg.beta == 0.04 and cfg.iterations_per_update == 1 and cfg.backend is None
    assert rlvr.epochs_phase1 == rlvr.epochs_phase2 == rlmt.epochs == 10
    options = HarmonOptions.from_dict(yaml.safe_load((RECIPES / "backend.yaml").read_text()), "backend.yaml")
    assert options.max_images >= 2 and options.image_size == 512 and options.guidance_scale == 3.0


@pytest.mark.slow
def test_recipe_dry_runs_on_a_tiny_harmon(world, tmp_path, capsys):
    options = yaml.safe_load((RECIPES / "backend.yaml").read_text())
    options.update(image_size=16, understanding_image_size=16, num_iter=2, diffusion_steps=4)  # tiny sizes
    init = write_init_checkpoint(world / "tiny", tmp_path / "init", **options)
    (init / "meta.json").write_text('{"stage": "rlvr"}\n')  # stands in for an RLVR run: RLMT's evaluator
    cpu = ["--device", "cpu", "--dtype", "float32", "--output_dir", str(tmp_path / "runs"), "--dry-run",
           "--max_new_tokens", "64", "--judge_max_new_tokens", "64"]
    assert main(["train", "rlvr", "--config", str(RECIPES / "rlvr.yaml"), "--model", str(init),
                 "--quadruplets", str(world / "q.jsonl"), *cpu[:-2]]) == 0
    assert main(["train", "rlmt", "--config", str(RECIPES / "rlmt.yaml"), "--evaluator", str(init),
                 "--samples", str(world / "s.jsonl"), *cpu]) == 0
    out = capsys.readouterr().out
    assert out.count("everything validated") == 2 and out.count("\"kind\": \"harmon\"") == 2, out
    assert not (tmp_path / "runs").exists()


def test_mar_reference_check_skips_without_a_checkout(tmp_path, capsys):
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "bench" / "check_harmon_vs_mar.py"
    spec = importlib.util.spec_from_file_location("check_harmon_vs_mar", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main([]) == 0 and "skipped" in capsys.readouterr().out
    assert mod.main(["--mar-dir", str(tmp_path)]) == 0 and "no MAR checkout" in capsys.readouterr().out
