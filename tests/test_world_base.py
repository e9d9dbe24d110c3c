"""seer.world with the shipped base (seer/world/assets/base): oracle vs rules, tokenizer round trip, load errors,
and a few-step pretraining run with checkpoint/resume."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from seer.backends.base import BackendError
from seer.world import ASSETS_BASE, load_base
from seer.world import semantics as S
from seer.world.render import ATTRIBUTES, Spec, render


@pytest.fixture(scope="module")
def base():
    torch.set_num_threads(1)
    return load_base()


def test_shipped_base_loads_and_matches_this_world(base):
    backend, oracle, semantics = base
    assert oracle.name == "oracle"
    assert semantics is S
    assert backend.image_tokenizer.num_codes == 1024 and backend.image_tokenizer.tokens_per_image == 64


def test_oracle_agrees_with_the_rules_on_renders(base):
    _, oracle, _ = base
    rng = np.random.default_rng(0)
    imgs, truth = [], []
    for c in S.CONCEPTS.values():
        for make in (S.satisfying_spec, S.violating_spec):
            for k in range(3):
                subject = ("cat", "ghost", "key")[k]
                img, spec = render(make(c.target, {"subject": subject}, rng), int(rng.integers(1 << 30)))
                imgs.append(img)
                truth.append((c, spec))
    reads = oracle.read_attributes(imgs)
    agree = [S.satisfies(r, c.target) == S.satisfies(spec.attributes(), c.target)
             for r, (c, spec) in zip(reads, truth, strict=True)]
    assert np.mean(agree) >= 0.95, f"oracle agrees with the rules on {np.mean(agree):.3f} of renders"
    attr_acc = np.mean([r[k] == getattr(spec, k) for r, (_, spec) in zip(reads, truth, strict=True)
                        for k in ATTRIBUTES])
    assert attr_acc >= 0.97


def test_shipped_codebook_round_trip_keeps_attributes(base):
    backend, oracle, _ = base
    imgs = np.stack([render(None, s)[0] for s in range(64)])
    rt = backend.image_tokenizer.roundtrip(imgs)
    assert np.array_equal(rt, imgs)
    assert oracle.read_attributes(rt) == oracle.read_attributes(imgs)


def test_compare_prefers_the_satisfying_image(base):
    _, oracle, _ = base
    from seer.data import Sample

    s = Sample(id="x", instruction="make it look scary , yet undeniably cute .", prompt="a ghost",
               category="constraint_reasoning")
    good, _ = render(Spec(subject="ghost", style="night", colour="pink", size="small"), 1)
    plain, _ = render(Spec(subject="ghost", style="normal", colour="green", size="large"), 1)
    other, _ = render(Spec(subject="cat", style="night", colour="pink", size="small"), 1)
    assert oracle.compare(s, good, plain) == 1.0
    assert oracle.compare(s, plain, good) == 0.0
    assert oracle.compare(s, good, other) == 1.0  # the subject comes first
    assert oracle.compare(s, good, good) == 0.5
    a = oracle.assess(s, good)
    assert a.satisfied and a.subject_kept and a.compliance == 1.0 and 0 <= a.quality <= 1


def _copy_base(tmp_path):
    d = tmp_path / "base"
    shutil.copytree(ASSETS_BASE, d)
    return d


def test_mismatched_world_fingerprint_is_an_error(tmp_path):
    d = _copy_base(tmp_path)
    meta = json.loads((d / "world.json").read_text())
    meta["world_fingerprint"] = "0000"
    (d / "world.json").write_text(json.dumps(meta))
    with pytest.raises(BackendError, match="another version of the world"):
        load_base(d)


def test_mismatched_tokenizer_and_model_vocab_is_an_error(tmp_path):
    d = _copy_base(tmp_path)
    cfg = json.loads((d / "umm" / "config.json").read_text())
    cfg["vocab_size"] += 7
    (d / "umm" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BackendError, match="vocab"):
        load_base(d)


def test_corrupted_oracle_is_an_error(tmp_path):
    d = _copy_base(tmp_path)
    (d / "oracle.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(BackendError, match="corrupted oracle"):
        load_base(d)
    d2 = _copy_base(tmp_path / "two")
    (d2 / "world.json").unlink()
    with pytest.raises(BackendError, match="world.json: missing"):
        load_base(d2)


def test_novel_code_weights_mark_each_code_of_an_image_once(base):
    from seer.world.pretrain import novel_code_weights, weighted_lm_loss

    backend = base[0]
    img, spec = render(Spec(subject="cat", colour="red", material="wood", accessory="crown"), 3)
    ids, mask = backend.encode_image_example("a red wood cat with a crown", img)
    batch = backend.collate([(ids, mask), backend.encode_text_example("what is it ?", "a cat")])
    w = novel_code_weights(batch["labels"], backend.image_start, backend.num_image_codes, 5.0)
    codes = [i for i, m in zip(ids, mask, strict=True) if m and i != backend.eoi_id]
    first = [k for k, c in enumerate(codes) if c not in codes[:k]]
    assert 3 <= len(first) <= 5  # background, subject, crown (and a style's own cells)
    start = mask.index(1)
    assert w[0, start:start + 64].tolist() == [5.0 if k in first else 1.0 for k in range(64)]
    assert w[0, start + 64] == 1.0 and w[0, :start].sum() == 0  # <eoi> scored plainly, the prompt not at all
    assert torch.equal(w[1], (batch["labels"][1] != -100).float())  # text: no image codes, plain weights
    # each code (the subject's among them): its first cell weighted, the copies not
    for code in set(codes):
        assert sum(float(w[0, start + k]) for k, c in enumerate(codes) if c == code) == 5.0 + codes.count(code) - 1
    # with unit weights the loss is the model's own mean
    with torch.no_grad():
        out = backend.model(**batch)
        plain = weighted_lm_loss(out.logits, batch["labels"], (batch["labels"] != -100).float())
    assert abs(plain.item() - out.loss.item()) < 1e-5


@pytest.mark.slow
def test_pretrain_few_steps_logs_checkpoints_and_resumes(tmp_path):
    from seer.world.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(out=str(tmp_path / "wb"), steps=5, minutes=5, batch=4, hidden=32, layers=1, heads=2,
                         oracle_steps=2, codebook_images=50, checkpoint_every=2, warmup=1, warm_steps=1,
                         detail_steps=1, paint_steps=1, follow_steps=1, evaluator_steps=1, evaluator_prior="balanced",
                         vision=False)
    meta = pretrain(cfg)
    assert meta["steps_done"] == 5
    # one step of each warm phase, the last of the evaluator prior's own kind
    assert set(meta["final_loss_by_kind"]) == {"read", "read_detail", "paint", "follow", "evaluate_balanced"}
    assert (tmp_path / "wb" / "ckpt.pt").is_file()
    backend, oracle, _ = load_base(tmp_path / "wb")
    assert len(backend.generate_images(["a cat"], [0])) == 1
    assert backend.vision is None and not (tmp_path / "wb" / "umm" / "aligner.safetensors").exists()
    with pytest.raises(ValueError, match="evaluator_prior"):
        PretrainConfig(evaluator_prior="coin")
    with pytest.raises(ValueError, match="evaluator_steps"):
        PretrainConfig(evaluator_steps=-1)
    with pytest.raises(ValueError, match="distract"):
        PretrainConfig(distract=1.5)
    with pytest.raises(ValueError, match="uncond"):
        PretrainConfig(distract=0.6, uncond=0.5)
    with pytest.raises(ValueError, match="image_order"):
        PretrainConfig(image_order="spiral")
    with pytest.raises(ValueError, match="image_cfg_scale"):
        PretrainConfig(image_cfg_scale=0.5)
    with pytest.raises(ValueError, match="novel_weight"):
        PretrainConfig(novel_weight=0)
    with pytest.raises(ValueError, match="'raster' order and .*ckpt.pt was trained on them"):
        pretrain(replace(cfg, steps=7, resume=True, image_order="centre"))
    cfg.steps, cfg.resume = 7, True
    meta2 = pretrain(cfg)
    assert meta2["steps_done"] == 7


@pytest.mark.slow
def test_pretrain_centre_order_unconditional_batches_and_novel_weight(tmp_path):
    from seer.world.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(out=str(tmp_path / "wc"), steps=12, minutes=5, batch=4, hidden=32, layers=1, heads=2,
                         oracle_steps=2, codebook_images=50, warmup=1, warm_steps=0, uncond=0.9,
                         image_order="centre_first", image_cfg_scale=2.0, novel_weight=8.0)
    meta = pretrain(cfg)
    assert "generate_uncond" in meta["final_loss_by_kind"]  # 36% of the mix (seeded stream)
    backend, _, _ = load_base(tmp_path / "wc")
    assert backend.image_tokenizer.order == "centre_first" and backend.image_cfg_scale == 2.0
    assert len(backend.generate_images(["a cat", "a red key"], [0, 1])) == 2


@pytest.mark.slow
def test_build_data_small_is_deterministic_and_splits_are_disjoint(tmp_path):
    from seer.data import load_quadruplets, load_samples
    from seer.world.build_data import BuildConfig, build_data
    from seer.world.render import TEST_SUBJECTS, TRAIN_SUBJECTS

    torch.set_num_threads(1)
    outs = []
    for k in range(3):  # runs 1 and 2 add wrongly edited negatives / plain-wins pairs, from their own streams
        cfg = BuildConfig(out=str(tmp_path / f"d{k}"), prompts_per_instruction=1, keep=12,
                          test_prompts_per_instruction=1, retries=1, wrong_edit_negatives=k == 1,
                          plain_wins_pairs=k == 2)
        manifest = build_data(cfg)
        outs.append(manifest)
    extra = outs[1]["train_wrong_edit_negatives_verified"]
    plain = outs[2]["train_plain_wins_verified"]
    assert outs[0]["train_wrong_edit_negatives_verified"] == outs[0]["train_plain_wins_verified"] == 0
    assert outs[1]["quadruplets_train"]["phase2"] == outs[0]["quadruplets_train"]["phase2"] + extra
    assert outs[2]["quadruplets_train"]["phase2"] == outs[0]["quadruplets_train"]["phase2"] + plain
    same = ("config", "train_wrong_edit_negatives_verified", "train_plain_wins_verified", "quadruplets_train")
    for k in (1, 2):  # the rest of the data is the same with or without them
        assert {a: v for a, v in outs[0].items() if a not in same} == {
            a: v for a, v in outs[k].items() if a not in same}
    lines = [(tmp_path / f"d{k}" / "quadruplets_train.jsonl").read_text().splitlines() for k in range(3)]
    assert [x for x in lines[1] if '"q2w-' not in x] == lines[0]
    assert [x for x in lines[2] if '"q2p-' not in x] == lines[0]
    q2 = {x.id.removeprefix("q2-"): x for x in load_quadruplets(tmp_path / "d2" / "quadruplets_train.jsonl")
          if x.id.startswith("q2-")}
    wins = [x for x in load_quadruplets(tmp_path / "d2" / "quadruplets_train.jsonl") if x.id.startswith("q2p-")]
    assert len(wins) == plain and (plain > 0 or not outs[2]["train_kept"])
    # the plain image of p0 is the chosen one, against an image made for another subject
    assert all(x.image_chosen == q2[x.id.removeprefix("q2p-")].image_rejected for x in wins)
    wrong = load_quadruplets(tmp_path / "d1" / "quadruplets_train.jsonl")
    wrong = [x for x in wrong if x.id.startswith("q2w-")]
    assert len(wrong) == extra and (extra > 0 or not outs[1]["train_kept"])
    positives = {(x.instruction, x.prompt): x.image for x in load_samples(tmp_path / "d1" / "samples.jsonl")}
    assert all(x.phase == 2 and x.image_chosen == positives[(x.instruction, x.prompt)] for x in wrong)
    d = tmp_path / "d0"
    test = load_samples(d / "samples_test.jsonl")
    assert len(test) == 40
    assert sum(s.distribution == "ood" for s in test) == 20
    assert all(S.prompt_attributes(s.prompt)["subject"] in TEST_SUBJECTS for s in test)
    if outs[0]["train_kept"]:
        train = load_samples(d / "samples.jsonl")
        assert all(S.prompt_attributes(s.prompt)["subject"] in TRAIN_SUBJECTS for s in train)
        assert all(s.distribution == "id" and s.image for s in train)
        train_instr = {s.instruction for s in train}
        assert not train_instr & {s.instruction for s in test if s.distribution == "ood"}
        q = load_quadruplets(d / "quadruplets_train.jsonl")
        assert {x.phase for x in q} == {1, 2}
    if outs[0]["test_quadruplets"]:
        assert all(x.split == "test" for x in load_quadruplets(d / "quadruplets_test.jsonl"))
    assert (d / "samples_test.jsonl").read_text() == (tmp_path / "d1" / "samples_test.jsonl").read_text()


@pytest.mark.slow
def test_pretrain_v2_trains_the_aligner_and_code_rows_is_deterministic_and_resumes(tmp_path):
    from seer.world.pretrain import PretrainConfig, pretrain
    from seer.world.vision import ENCODER_FILE

    def cfg(name, steps, resume=False):
        return PretrainConfig(out=str(tmp_path / name), steps=steps, minutes=5, batch=4, hidden=32, layers=1, heads=2,
                              oracle_steps=2, codebook_images=50, checkpoint_every=2, warmup=1, encoder_steps=2,
                              encoder_pool=16, resume=resume)

    a = pretrain(cfg("a", 4))
    b = pretrain(cfg("b", 4))
    assert a["final_loss_by_kind"] == b["final_loss_by_kind"]  # the same seed, the same first steps
    assert (tmp_path / "a" / "vision" / ENCODER_FILE).is_file() and (tmp_path / "a" / "vision" / "probe.json").is_file()
    backend, _, _ = load_base(tmp_path / "a")
    assert backend.vision is not None
    enc0 = {k: v.clone() for k, v in backend.vision.encoder.state_dict().items()}
    resumed = pretrain(cfg("a", 6, resume=True))  # the encoder is loaded, not retrained
    assert resumed["steps_done"] == 6
    backend2, _, _ = load_base(tmp_path / "a")
    assert all(torch.equal(enc0[k], v) for k, v in backend2.vision.encoder.state_dict().items())
    ctx = [backend.encode_context("<image> describe the image .".replace("<image>", " "))]
    assert ctx  # the v2 vocabulary holds the judgement words
    assert "follow" in backend.tokenizer.get_vocab()
