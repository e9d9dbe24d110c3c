"""The Janus-Pro recipes load with the stage configs, carry the paper's values, and dry-run on a tiny Janus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from seer.backends.janus import JanusOptions, build_tiny_janus, write_init_checkpoint
from seer.cli import main
from seer.config import RLMTConfig, RLVRConfig, load_config

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
SIZES = ("janus_pro_1b", "janus_pro_7b")


@pytest.mark.parametrize("size", SIZES)
def test_recipes_load_with_paper_values(size):
    rlvr = load_config(RLVRConfig, RECIPES / size / "rlvr.yaml", ["--model", "m", "--quadruplets", "q"])
    rlmt = load_config(RLMTConfig, RECIPES / size / "rlmt.yaml", ["--evaluator", "e", "--samples", "s"])
    for cfg in (rlvr, rlmt):
        assert cfg.beta == 0.04 and cfg.iterations_per_update == 1 and cfg.group_size == 8
        assert cfg.dtype == "bfloat16" and cfg.device == "cuda"
    assert rlvr.epochs_phase1 == rlvr.epochs_phase2 == rlmt.epochs == 10
    assert "<image>" in rlvr.templates.evaluator and "<answer>" in rlvr.templates.evaluator
    options = JanusOptions.from_dict(yaml.safe_load((RECIPES / size / "backend.yaml").read_text()), size)
    assert options.max_images >= 2  # the evaluator compares two images
    assert (options.lora is not None) == (size == "janus_pro_7b")
    # a full fine-tune keeps θ in float32 (bf16 θ barely moves at these lrs); the 7B judge shares the LoRA base
    assert options.master_weights == ("float32" if options.lora is None else None)
    assert rlmt.share_evaluator_base == (options.lora is not None)


def test_accelerate_configs_parse_and_none_claims_sharding():
    from accelerate.commands.config.config_args import load_config_from_file

    # cpu_ddp: MULTI_GPU + use_cpu; fsdp: the stages shard θ themselves (tests/test_distributed_fsdp.py); no DeepSpeed
    expected = {"single_gpu": "NO", "gpu_ddp": "MULTI_GPU", "cpu_ddp": "MULTI_GPU", "fsdp": "FSDP"}
    names = sorted(f.stem for f in (RECIPES / "accelerate").glob("*.yaml"))
    assert names == sorted(expected)
    for name in names:
        cfg = load_config_from_file(str(RECIPES / "accelerate" / f"{name}.yaml"))
        assert cfg.distributed_type.value == expected[name]


@pytest.mark.parametrize("var", ["ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"])
def test_a_sharded_launch_fails_instead_of_replicating(var, tmp_path, monkeypatch):
    from seer.backends.base import BackendError
    from seer.backends.janus import JanusBackend

    tiny = build_tiny_janus(tmp_path / "tiny")
    monkeypatch.setenv(var, "true")
    with pytest.raises(BackendError, match=f"{var}=true.*Janus backend cannot be sharded"):
        JanusBackend.load(tiny)


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
def test_recipe_dry_runs_on_a_tiny_janus(size, tmp_path, capsys):
    from seer.data import Quadruplet, Sample, save_image, write_jsonl

    tiny = build_tiny_janus(tmp_path / "tiny")
    options = yaml.safe_load((RECIPES / size / "backend.yaml").read_text())
    init = write_init_checkpoint(tiny, tmp_path / "init", **options)
    (init / "meta.json").write_text('{"stage": "rlvr"}\n')  # stands in for an RLVR run: RLMT's evaluator
    save_image(tmp_path / "img" / "a.png", np.full((24, 24, 3), 180, np.uint8))
    save_image(tmp_path / "img" / "b.png", np.full((24, 24, 3), 60, np.uint8))
    write_jsonl(tmp_path / "q.jsonl", [Quadruplet(f"q{p}", p, "make it red" if p == 2 else "", "a cat",
                                                  "semantic_edit", "img/a.png", "img/b.png") for p in (1, 2)])
    write_jsonl(tmp_path / "s.jsonl", [Sample("s0", "make it red", "a cat", "semantic_edit")])
    cpu = ["--device", "cpu", "--dtype", "float32", "--output_dir", str(tmp_path / "runs"), "--dry-run"]
    assert main(["train", "rlvr", "--config", str(RECIPES / size / "rlvr.yaml"), "--model", str(init),
                 "--quadruplets", str(tmp_path / "q.jsonl"), *cpu]) == 0
    assert main(["train", "rlmt", "--config", str(RECIPES / size / "rlmt.yaml"), "--evaluator", str(init),
                 "--samples", str(tmp_path / "s.jsonl"), *cpu]) == 0
    out = capsys.readouterr().out
    assert out.count("everything validated") == 2 and out.count("\"backend\": \"janus\"") == 2, out
    assert not (tmp_path / "runs").exists()
