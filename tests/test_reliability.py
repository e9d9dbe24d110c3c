"""Issue 25: nothing lost, every bad input a clear error. One test (or more) per defect the issue lists, each
reproducing its failing case; the run-folder tests use the stub backend (tests/stub_backend.py)."""

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from stub_backend import write_stub_data

from seer.cli import main
from seer.config import ConfigError, RLVRConfig, load_config
from seer.data import DataError, load_quadruplets, load_samples
from seer.stages import rlmt, rlvr


@pytest.fixture
def data(tmp_path):
    return write_stub_data(tmp_path)


def rlvr_flags(data, **kw):
    base = {"model": str(data["base"]), "quadruplets": str(data["quadruplets"]), "output_dir": str(data["runs"]),
            "group_size": 4, "queries_per_step": 3, "epochs_phase1": 2, "epochs_phase2": 2, "lr_phase1": 0.1,
            "lr_phase2": 0.03, "sample_every": 1, "save_every": 100, "tensorboard": False, **kw}
    return [t for k, v in base.items() for t in (f"--{k}", str(v))]


def rlvr_cfg(data, *flags, **kw):
    return load_config(RLVRConfig, None, [*rlvr_flags(data, **kw), *flags])


def snapshot(folder):
    """Every file under ``folder`` with its bytes: what "nothing lost" compares."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def theta(path):
    return torch.load(Path(path) / "stub.pt")["policy"]


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


# -- 1. --overwrite validates before deleting ---------------------------------------------------------------------
@pytest.mark.parametrize("bad", [["--lr_phase1", "nan"], ["--wandb", "true"], ["--device", "cuda:99"]])
def test_overwrite_with_a_bad_setting_deletes_nothing(data, capsys, bad):
    done = rlvr.train(rlvr_cfg(data, name="keep", max_steps=2))
    before = snapshot(done)
    assert main(["train", "rlvr", *rlvr_flags(data, name="keep"), "--overwrite", *bad]) == 2
    assert "seer: error:" in capsys.readouterr().err
    assert snapshot(done) == before


def test_overwrite_failing_before_its_first_checkpoint_puts_the_old_run_back(data, monkeypatch):
    done = rlvr.train(rlvr_cfg(data, name="keep", max_steps=2))
    before = snapshot(done)

    def broken(*a, **k):
        raise RuntimeError("rollout failed")

    monkeypatch.setattr(rlvr, "rollouts", broken)
    with pytest.raises(RuntimeError, match="rollout failed"):
        rlvr.train(rlvr_cfg(data, "--overwrite", name="keep"))
    assert snapshot(done) == before
    assert not (done.parent / ".rlvr.replaced").exists()


def test_overwrite_killed_before_its_first_checkpoint_is_undone_at_the_next_start(data):
    done = rlvr.train(rlvr_cfg(data, name="keep", max_steps=2))
    before = snapshot(done)
    # what kill -9 leaves: the old run aside, a new run folder with its records but no checkpoint
    os.replace(done, done.parent / ".rlvr.replaced")
    done.mkdir()
    (done / "config.yaml").write_text("half")
    with pytest.raises(ConfigError, match="already exists"):
        rlvr.train(rlvr_cfg(data, name="keep"))
    assert snapshot(done) == before  # put back, then the usual refusal


def test_overwrite_removes_the_old_run_once_the_new_one_checkpointed(data):
    done = rlvr.train(rlvr_cfg(data, name="keep", max_steps=2))
    rlvr.train(rlvr_cfg(data, "--overwrite", name="keep", max_steps=1))
    assert not (done.parent / ".rlvr.replaced").exists()
    assert [m["step"] for m in read_jsonl(done / "metrics.jsonl")] == [1]


# -- 3. --resume checks what it resumes ---------------------------------------------------------------------------
def test_resume_refuses_a_changed_data_file(data, capsys):
    rlvr.train(rlvr_cfg(data, name="r", max_steps=2))
    lines = data["quadruplets"].read_text().splitlines()
    data["quadruplets"].write_text("\n".join(lines[:-2]) + "\n")  # fewer records: the run would end early
    assert main(["train", "rlvr", *rlvr_flags(data, name="r"), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "quadruplets" in err and "changed since the run started" in err


def test_resume_refuses_a_changed_model(data):
    rlvr.train(rlvr_cfg(data, name="r", max_steps=2))
    with (data["base"] / "stub.pt").open("ab") as f:
        f.write(b"x")
    with pytest.raises(ConfigError, match=r"model .* changed since the run started \(files changed: stub.pt\)"):
        rlvr.train(rlvr_cfg(data, "--resume", name="r"))


def test_resume_without_config_yaml_is_an_error_not_a_fresh_record(data):
    run = rlvr.train(rlvr_cfg(data, name="r", max_steps=2))
    (run / "config.yaml").unlink()
    with pytest.raises(ConfigError, match="config.yaml is missing"):
        rlvr.train(rlvr_cfg(data, "--resume", name="r", lr_phase1=0.5, group_size=6))
    assert not (run / "config.yaml").exists()


def test_resume_names_the_setting_that_differs(data):
    rlvr.train(rlvr_cfg(data, name="r", max_steps=2))
    with pytest.raises(ConfigError, match=r"lr_phase2: 0.03 when started, 0.5 now"):
        rlvr.train(rlvr_cfg(data, "--resume", name="r", lr_phase2=0.5))


def test_a_moved_run_folder_and_moved_data_resume(data, tmp_path):
    full = rlvr.train(rlvr_cfg(data, name="full"))
    rlvr.train(rlvr_cfg(data, name="part", max_steps=3))
    moved = tmp_path / "elsewhere"
    shutil.move(str(data["runs"]), moved)
    copy = data["quadruplets"].with_name("copy.jsonl")  # same folder: image paths stay valid
    shutil.copy(data["quadruplets"], copy)
    part = rlvr.train(rlvr_cfg(data, "--resume", name="part", output_dir=str(moved), quadruplets=str(copy)))
    a, b = theta(moved / "full" / "rlvr" / "model"), theta(part / "model")
    assert full.parent.parent != moved and all(torch.equal(a[k], b[k]) for k in a)


# -- 4. checkpoints to fall back on -------------------------------------------------------------------------------
def _straight_and_part(data):
    straight = rlvr.train(rlvr_cfg(data, name="straight", save_every=1))
    part = rlvr.train(rlvr_cfg(data, name="part", save_every=1, max_steps=5))
    assert json.loads((part / "state" / "cursor.json").read_text())["step"] == 5
    assert json.loads((part / "state.1" / "cursor.json").read_text())["step"] == 4
    assert not (part / "state.2").exists()  # keep_checkpoints 2
    return straight, part


def _same_model(a, b):
    a, b = theta(a / "model"), theta(b / "model")
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("damage", ["truncate_theta", "corrupt_cursor"])
def test_a_damaged_checkpoint_falls_back_to_the_previous(data, capsys, damage):
    straight, part = _straight_and_part(data)
    if damage == "truncate_theta":
        f = part / "state" / "theta.pt"
        f.write_bytes(f.read_bytes()[:100])
    else:
        (part / "state" / "cursor.json").write_text('{"step": 5, "pha')
    rlvr.train(rlvr_cfg(data, "--resume", name="part", save_every=1))
    err = capsys.readouterr().err
    assert "damaged" in err and "resuming from" in err and "step 4" in err
    assert _same_model(straight, part)
    assert [m["step"] for m in read_jsonl(part / "metrics.jsonl")] == list(range(1, 9))


def test_every_checkpoint_damaged_is_a_clear_error(data):
    _, part = _straight_and_part(data)
    for d in ("state", "state.1"):
        (part / d / "theta.pt").write_bytes(b"")
    with pytest.raises(ConfigError, match="no intact checkpoint.*theta.pt"):
        rlvr.train(rlvr_cfg(data, "--resume", name="part", save_every=1))


def test_state_old_is_used_and_stale_temporaries_are_removed(data):
    straight, part = _straight_and_part(data)
    # a crash between the two renames of the old single-checkpoint layout: only .state.old is whole
    shutil.rmtree(part / "state.1")
    os.replace(part / "state", part / ".state.old")
    (part / ".state.k3j4h5g6").mkdir()  # a checkpoint being written when a kill came
    (part / ".state.k3j4h5g6" / "theta.pt").write_bytes(b"half")
    (part / ".config.yaml.abc.tmp").write_text("half")
    rlvr.train(rlvr_cfg(data, "--resume", name="part", save_every=1))
    assert _same_model(straight, part)
    names = {p.name for p in part.iterdir()}
    assert not {n for n in names if n.startswith(".")}, names


def test_resume_across_a_kill_between_the_checkpoint_renames(data):
    straight, part = _straight_and_part(data)
    os.replace(part / "state", part / ".state.zz")  # state → state.1 done, tmp → state not yet: tmp is removed
    rlvr.train(rlvr_cfg(data, "--resume", name="part", save_every=1))
    assert _same_model(straight, part)


# -- 5. non-finite numbers ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("key,value", [("lr_phase1", "nan"), ("lr_phase1", "inf"), ("temperature", "nan"),
                                       ("epsilon", "nan"), ("beta", "nan"), ("lr_phase2", "-inf")])
def test_non_finite_numbers_are_refused_at_validation(data, capsys, key, value):
    assert main(["train", "rlvr", *rlvr_flags(data, name="nf"), f"--{key}", value]) == 2
    assert f"key {key!r} expects a finite float, got {value!r}" in capsys.readouterr().err
    assert not data["runs"].exists()


def test_non_finite_numbers_in_a_recipe_name_the_line(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: m\nquadruplets: q\nbeta: .nan\n")
    with pytest.raises(ConfigError, match=r"r.yaml:3: key 'beta' expects a finite float"):
        load_config(RLVRConfig, recipe)
    with pytest.raises(ConfigError, match="temperature must be a finite number"):
        RLVRConfig(model="m", quadruplets="q", temperature=float("nan"))


# -- 6. data-file errors name file:line:field ---------------------------------------------------------------------
def test_a_byte_that_is_not_utf8_names_file_and_line(data):
    raw = data["quadruplets"].read_bytes().splitlines(keepends=True)
    raw[2] = raw[2].replace(b"a cat", b"a c\xe9t")
    data["quadruplets"].write_bytes(b"".join(raw))
    with pytest.raises(DataError, match=r"quadruplets.jsonl:3: byte 0xe9 at column \d+ is not UTF-8"):
        load_quadruplets(data["quadruplets"])


def test_a_folder_given_as_a_data_file(tmp_path):
    with pytest.raises(DataError, match="is a folder; expected a JSONL file"):
        load_samples(tmp_path)


@pytest.mark.parametrize("phase", ["true", "1.0", '"1"'])
def test_phase_must_be_the_integer_1_or_2(data, phase):
    text = data["quadruplets"].read_text().replace('"phase": 1', f'"phase": {phase}', 1)
    data["quadruplets"].write_text(text)
    with pytest.raises(DataError, match=r"quadruplets.jsonl:1: field 'phase' is .*; expected 1 or 2"):
        load_quadruplets(data["quadruplets"])


def test_a_duplicate_key_in_a_recipe_is_an_error(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: m\nquadruplets: q\nlr_phase1: 1e-4\ngroup_size: 4\nlr_phase1: 1e-2\n")
    with pytest.raises(ConfigError, match=r"r.yaml:5: duplicate key 'lr_phase1' \(first on line 3\)"):
        load_config(RLVRConfig, recipe)
    recipe.write_bytes(b"model: m\nquadruplets: \xff\n")
    assert main(["train", "rlvr", "--config", str(recipe)]) == 2
    assert "r.yaml:2: byte 0xff is not UTF-8" in capsys.readouterr().err


def test_rlmt_resume_refuses_a_changed_samples_file(data):
    rlmt.train(load_config(rlmt.RLMTConfig, None, [
        "--evaluator", str(data["judge"]), "--samples", str(data["samples"]), "--output_dir", str(data["runs"]),
        "--group_size", "4", "--queries_per_step", "3", "--epochs", "2", "--tensorboard", "false",
        "--max_steps", "1"]))
    data["samples"].write_text(data["samples"].read_text().replace("a cat 0", "a dog 0"))
    with pytest.raises(ConfigError, match="samples .* changed"):
        rlmt.train(load_config(rlmt.RLMTConfig, None, [
            "--evaluator", str(data["judge"]), "--samples", str(data["samples"]), "--output_dir", str(data["runs"]),
            "--group_size", "4", "--queries_per_step", "3", "--epochs", "2", "--tensorboard", "false",
            "--resume"]))


# -- 2. build-data and reproduce write only into a folder of their own, atomically --------------------------------
def _fake_build(monkeypatch, die_after=None):
    """build-data's writer without the world model: a few files, or a kill midway."""
    from seer.world import build_data as B

    def fake(cfg, out):
        for i in range(3):
            (out / f"samples{i}.jsonl").write_text(f"new {i}\n")
            if die_after is not None and i == die_after:
                raise KeyboardInterrupt
        manifest = {"config": {"out": cfg.out}, "train_kept": 3, "world_fingerprint": "f"}
        (out / "manifest.json").write_text(json.dumps(manifest))
        return manifest

    monkeypatch.setattr(B, "_build_into", fake)
    return B


def test_build_data_refuses_a_folder_it_did_not_create(tmp_path, monkeypatch, capsys):
    B = _fake_build(monkeypatch)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    assert main(["world", "build-data", "--out", str(mine)]) == 2
    assert "not written by seer world build-data" in capsys.readouterr().err
    assert snapshot(mine) == {"thesis.tex": b"years of work"}
    B.build_data(B.BuildConfig(out=str(tmp_path / "new")))  # a new folder, then its own output, are accepted
    B.build_data(B.BuildConfig(out=str(tmp_path / "new")))
    assert "replaced the earlier data set" in capsys.readouterr().err


def test_build_data_killed_midway_leaves_the_old_data_set_whole(tmp_path, monkeypatch):
    B = _fake_build(monkeypatch)
    out = tmp_path / "data"
    B.build_data(B.BuildConfig(out=str(out)))
    (out / "samples0.jsonl").write_text("old 0\n")
    before = snapshot(out)
    _fake_build(monkeypatch, die_after=1)
    with pytest.raises(KeyboardInterrupt):
        B.build_data(B.BuildConfig(out=str(out)))
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no staging folder left


def test_reproduce_refuses_an_out_folder_it_did_not_create(tmp_path, monkeypatch, capsys):
    from seer.eval import reproduce as R

    monkeypatch.setattr(R, "STEPS", (("a", lambda rep: {}),))
    monkeypatch.setattr(R, "build_report", lambda rep: {"meta": {"steps": rep.steps}})
    out = tmp_path / "rep"
    (out / "data").mkdir(parents=True)
    (out / "data" / "samples.jsonl").write_text("mine\n")
    for flags in ([], ["--resume"], ["--overwrite"]):
        assert main(["reproduce", "--quick", "--out", str(out), *flags]) == 2
        assert "not written by seer reproduce" in capsys.readouterr().err
    assert snapshot(out) == {"data/samples.jsonl": b"mine\n"}


def test_reproduce_resume_names_the_setting_that_differs(tmp_path, monkeypatch, capsys):
    from seer.eval import reproduce as R

    monkeypatch.setattr(R, "STEPS", (("a", lambda rep: {}),))
    monkeypatch.setattr(R, "build_report", lambda rep: {"meta": {"steps": rep.steps}})
    out = tmp_path / "rep"
    assert main(["reproduce", "--quick", "--out", str(out), "--seed", "1"]) == 0
    assert main(["reproduce", "--quick", "--out", str(out), "--seed", "2", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "seed: 1 when started, 2 now" in err and "protocol" not in err


# -- 7. devices, output paths, SIGTERM ----------------------------------------------------------------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch without CUDA (or no GPU)")
def test_device_cuda_without_cuda_is_a_clear_error(data, capsys):
    assert main(["train", "rlvr", *rlvr_flags(data, name="d"), "--device", "cuda"]) == 2
    assert "device 'cuda':" in capsys.readouterr().err and not data["runs"].exists()
    assert main(["generate", "--model", str(data["base"]), "--prompt", "a cat", "--out",
                 str(data["runs"].parent / "x.png"), "--device", "cuda"]) == 2
    assert "--device 'cuda': " in capsys.readouterr().err


def test_reprompt_images_a_folder_is_a_clear_error(data, tmp_path, capsys):
    assert main(["reprompt", "--model", str(data["judge"]), "--instruction", "make it glow", "--prompt", "a cat",
                 "--images", str(tmp_path)]) == 2
    assert f"--images {tmp_path}: is a folder" in capsys.readouterr().err
    assert main(["generate", "--model", str(data["base"]), "--prompt", "a cat", "--out", str(tmp_path)]) == 2
    assert f"--out {tmp_path}: is a folder" in capsys.readouterr().err


def test_an_unexpected_os_error_is_one_line_and_debug_shows_the_traceback(data, tmp_path, capsys, monkeypatch):
    from seer.stages import cli as stages_cli

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied", str(tmp_path / "x.png"))

    monkeypatch.setattr(stages_cli, "_open", denied)
    assert main(["generate", "--model", str(data["base"]), "--prompt", "a", "--out", str(tmp_path / "x.png")]) == 2
    assert "seer: error: [Errno 13] Permission denied" in capsys.readouterr().err
    with pytest.raises(PermissionError):
        main(["--debug", "generate", "--model", str(data["base"]), "--prompt", "a", "--out", str(tmp_path / "x")])


def test_sigterm_is_handled_like_sigint(data, capsys, monkeypatch):
    import signal

    original = rlvr.rollouts
    calls = {"n": 0}

    def killed_at_step_3(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(*a, **k)

    monkeypatch.setattr(rlvr, "rollouts", killed_at_step_3)
    before = signal.getsignal(signal.SIGTERM)
    assert main(["train", "rlvr", *rlvr_flags(data, name="t", save_every=2)]) == 143
    assert "terminated (SIGTERM)" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) == before
    run = data["runs"] / "t" / "rlvr"
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # no temporary folder left
    monkeypatch.setattr(rlvr, "rollouts", original)
    assert main(["train", "rlvr", *rlvr_flags(data, name="t", save_every=2), "--resume"]) == 0


# -- 8. the evaluator must be an RLVR run ---------------------------------------------------------------------------
def test_rlmt_refuses_an_evaluator_that_is_not_an_rlvr_run(data, capsys):
    flags = ["--samples", str(data["samples"]), "--output_dir", str(data["runs"]), "--group_size", "4",
             "--tensorboard", "false", "--max_steps", "1"]
    assert main(["train", "rlmt", "--evaluator", str(data["base"]), *flags]) == 2  # the untrained base
    assert "not a run of `seer train rlvr`" in capsys.readouterr().err
    assert main(["train", "rlmt", "--evaluator", str(data["judge"]), "--name", "p", *flags]) == 0
    assert main(["train", "rlmt", "--evaluator", str(data["runs"] / "p" / "rlmt"), "--name", "q", *flags]) == 2
    assert "an RLMT run" in capsys.readouterr().err
    rlvr.train(rlvr_cfg(data, name="e", max_steps=1))
    assert main(["train", "rlmt", "--evaluator", str(data["runs"] / "e" / "rlvr"), "--name", "q", *flags]) == 0


# -- 15. words the model cannot read --------------------------------------------------------------------------------
class _WordModel:
    """A word-level tokenizer's interface (encode_context, unk_id), as the world model has."""

    kind, unk_id = "fake", 1
    known = {"make", "it", "look", "scary", ",", "yet", "undeniably", "cute", "a", "cat"}

    def encode_context(self, context, where="context"):
        return [0] + [2 if w in self.known else self.unk_id for w in context.text.split()] + [3]


def test_reprompt_refuses_words_outside_the_vocabulary(data, monkeypatch, capsys):
    from seer.stages import cli as stages_cli

    monkeypatch.setattr(stages_cli, "_open", lambda args: _WordModel())
    argv = ["reprompt", "--model", str(data["judge"]), "--instruction", "make it look scary , yet undeniably cute"]
    assert main([*argv, "--prompt", "a lamp"]) == 2
    err = capsys.readouterr().err
    assert "--prompt has 'lamp'" in err and "--instruction has" not in err
    assert main(["generate", "--model", str(data["base"]), "--prompt", "a lamp", "--out",
                 str(data["runs"].parent / "x.png")]) == 2
    assert "'lamp'" in capsys.readouterr().err


@pytest.mark.slow
def test_the_readme_example_on_the_world_model(tmp_path, capsys):
    import seer.world as world

    model = str(world.base_dir() / "umm")
    instruction = "make it look scary , yet undeniably cute"
    assert main(["reprompt", "--model", model, "--instruction", instruction, "--prompt", "a lamp"]) == 2
    err = capsys.readouterr().err
    assert "--prompt has 'lamp'" in err and "tokenizer.json" in err and "cat, dog" in err
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert f'--instruction "{instruction}" --prompt "a cat"' in readme
    assert main(["reprompt", "--model", model, "--instruction", instruction, "--prompt", "a cat"]) in (0, 1)


def test_reproduce_resume_never_builds_into_a_data_folder_it_did_not_create(tmp_path, monkeypatch):
    from seer.cli import UserError
    from seer.eval import reproduce as R

    monkeypatch.setattr(R, "STEPS", (("a", lambda rep: {}), ("data", R.step_data)))
    monkeypatch.setattr(R, "build_report", lambda rep: {"meta": {"steps": rep.steps}})
    out = tmp_path / "rep"
    R.reproduce(out, quick=True, only=("a",), log=lambda m: None)  # a reproduction of its own, data not built yet
    (out / "data").mkdir()
    (out / "data" / "samples.jsonl").write_text("someone else's\n")
    with pytest.raises(UserError, match="not written by seer world build-data"):
        R.reproduce(out, quick=True, resume=True, log=lambda m: None)
    assert (out / "data" / "samples.jsonl").read_text() == "someone else's\n"


def test_a_huge_training_image_is_a_clear_error(data, capsys):
    from PIL import Image

    Image.new("1", (14000, 14000)).save(data["quadruplets"].parent / "img" / "dark.png")  # 196 M pixels
    assert main(["train", "rlvr", *rlvr_flags(data, name="big"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "record 'q1-0' field 'image_rejected'" in err and "too large to read" in err
    Image.new("1", (5000, 5000)).save(data["quadruplets"].parent / "img" / "dark.png")  # under PIL's limit
    assert main(["train", "rlvr", *rlvr_flags(data, name="big"), "--dry-run"]) == 2
    assert "5000x5000; expected 8x8" in capsys.readouterr().err  # from the header, never decoded


def test_resume_refuses_a_changed_training_image(data):
    from seer.data import save_image

    rlvr.train(rlvr_cfg(data, name="r", max_steps=2))
    save_image(data["quadruplets"].parent / "img" / "dark.png", torch.full((8, 8, 3), 90, dtype=torch.uint8).numpy())
    with pytest.raises(ConfigError, match=r"quadruplets .* changed since the run started \(files changed: img/dark"):
        rlvr.train(rlvr_cfg(data, "--resume", name="r"))
