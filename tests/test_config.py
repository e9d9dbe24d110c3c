"""Stage configs: YAML and flags, types, unknown keys, help text, the resolved YAML round trip."""

import dataclasses

import pytest
import yaml

from seer.backends.base import write_backend_meta
from seer.config import (
    ConfigError,
    RLMTConfig,
    RLVRConfig,
    config_dict,
    config_yaml,
    describe,
    known_keys,
    load_config,
    parse_flags,
    resolve_checkpoint,
)

REQUIRED = ["--model", "m", "--quadruplets", "q.jsonl"]


def test_every_field_has_help_and_a_source():
    for cls in (RLVRConfig, RLMTConfig):
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help text"
            assert f.metadata.get("source") in ("paper", "seer")
    paper = {f.name for f in dataclasses.fields(RLVRConfig) if f.metadata["source"] == "paper"}
    assert {"beta", "epsilon", "iterations_per_update", "epochs_phase1", "epochs_phase2"} <= paper
    assert "lr_phase1" not in paper and "group_size" not in paper  # lost from the paper: seer's choices


def test_defaults_follow_the_paper():
    cfg = load_config(RLVRConfig, None, REQUIRED)
    assert (cfg.beta, cfg.epsilon, cfg.iterations_per_update, cfg.epochs_phase1, cfg.epochs_phase2) == (
        0.04, 0.2, 1, 10, 10)
    assert cfg.group_size == 8 and cfg.format_weight == 1.0
    rlmt = load_config(RLMTConfig, None, ["--evaluator", "runs/x/rlvr", "--samples", "s.jsonl"])
    assert rlmt.epochs == 10 and rlmt.init is None and not rlmt.self_judge and not rlmt.judge_both_orders


def test_parse_flags_forms():
    assert parse_flags(["--a", "1", "--dry-run", "--b=x y", "--templates.system", "hi", "--flag"]) == {
        "a": "1", "dry_run": "true", "b": "x y", "templates.system": "hi", "flag": "true"}
    with pytest.raises(ConfigError, match="expected --key value"):
        parse_flags(["oops"])


def test_types_are_coerced_or_rejected():
    cfg = load_config(RLVRConfig, None, [*REQUIRED, "--seed", "3", "--beta", "0", "--wandb", "no", "--backend", "null",
                                         "--dtype", "bfloat16"])
    assert cfg.seed == 3 and cfg.beta == 0.0 and cfg.wandb is False and cfg.backend is None and cfg.dtype == "bfloat16"
    for key, value, expected in (("seed", "1.5", "int"), ("beta", "x", "float"), ("tensorboard", "maybe", "bool"),
                                 ("dtype", "[1]", None)):
        if expected is None:
            assert load_config(RLVRConfig, None, [*REQUIRED, f"--{key}", value]).dtype == "[1]"
            continue
        with pytest.raises(ConfigError, match=f"key '{key}' expects {expected}.*got '{value}'"):
            load_config(RLVRConfig, None, [*REQUIRED, f"--{key}", value])
    with pytest.raises(ConfigError, match="key 'seed' expects int, got True"):
        load_config(RLVRConfig, None, {"model": "m", "quadruplets": "q", "seed": True})


def test_unknown_key_lists_known_keys(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: m\nquadruplets: q\nlearning_rate: 1\n")
    with pytest.raises(ConfigError) as e:
        load_config(RLVRConfig, recipe)
    msg = str(e.value)
    assert "r.yaml:3: unknown config key 'learning_rate'" in msg
    assert all(k in msg for k in known_keys(RLVRConfig))
    with pytest.raises(ConfigError, match="unknown config key 'lr_phase1'"):  # a RLVR key is not a RLMT key
        load_config(RLMTConfig, None, ["--evaluator", "e", "--samples", "s", "--lr_phase1", "1"])


def test_bad_recipe_files(tmp_path):
    with pytest.raises(ConfigError, match="recipe file not found"):
        load_config(RLVRConfig, tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(RLVRConfig, bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(RLVRConfig, bad)


def test_value_checks():
    for flags, match in ((["--epsilon", "0"], "epsilon must be > 0"), (["--lr_phase2", "-1"], "lr_phase2 must be > 0"),
                         (["--iterations_per_update", "2"], "μ = 1"), (["--resume", "--overwrite"], "exclude"),
                         (["--name", "a/b"], "folder name"), (["--queries_per_step", "0"], "queries_per_step")):
        with pytest.raises(ConfigError, match=match):
            load_config(RLVRConfig, None, [*REQUIRED, *flags])
    with pytest.raises(ConfigError, match="model is required"):
        load_config(RLVRConfig, None, ["--quadruplets", "q"])


def test_resolved_yaml_round_trips_with_help_comments(tmp_path):
    cfg = load_config(RLVRConfig, None, [*REQUIRED, "--templates.system", "think first", "--lr_phase2", "3e-5",
                                         "--dry-run", "--name", "exp1"])
    text = config_yaml(cfg)
    assert "# G: completions sampled per query" in text and "[default: paper]" in text
    assert "dry_run" not in text  # how to run is not part of what was run
    (tmp_path / "c.yaml").write_text(text)
    again = load_config(RLVRConfig, tmp_path / "c.yaml")
    assert config_dict(again, run_control=False) == config_dict(cfg, run_control=False)
    assert yaml.safe_load(text)["templates"]["system"] == "think first"
    assert str(cfg.run_dir) == "runs/exp1/rlvr" and str(load_config(
        RLMTConfig, None, ["--evaluator", "e", "--samples", "s"]).run_dir) == "runs/seer/rlmt"
    assert "--judge_both_orders (bool, default False, seer)" in describe(RLMTConfig)


def test_resolve_checkpoint_accepts_run_dir_or_model(tmp_path):
    write_backend_meta(tmp_path / "rlvr" / "model", "token_umm")
    assert resolve_checkpoint(tmp_path / "rlvr", "evaluator") == tmp_path / "rlvr" / "model"
    assert resolve_checkpoint(tmp_path / "rlvr" / "model", "evaluator") == tmp_path / "rlvr" / "model"
    with pytest.raises(ConfigError, match="evaluator .*not a seer checkpoint"):
        resolve_checkpoint(tmp_path, "evaluator")


def test_world_recipes_load():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "recipes" / "world"
    rlvr = load_config(RLVRConfig, root / "rlvr.yaml", REQUIRED)
    rlmt = load_config(RLMTConfig, root / "rlmt.yaml", ["--evaluator", "runs/world/rlvr", "--samples", "s.jsonl"])
    assert rlvr.beta == rlmt.beta == 0.04 and rlvr.epochs_phase1 == rlvr.epochs_phase2 == rlmt.epochs == 10
    assert rlvr.group_size == rlmt.group_size == 8
