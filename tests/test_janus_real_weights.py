"""What a run on real Janus-Pro weights depends on, checked on tiny random Janus models: updates that move a bf16 θ
(fp32 master weights), one decode loop over all contexts with one prefill per context, the checkpoint's prompt
formats, the cache argument of the installed transformers, the peft API we call, and ``init --check``."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import torch

from seer.backends import janus as janus_mod
from seer.backends.base import BackendError, Context, SamplingParams
from seer.backends.janus import JanusBackend, build_tiny_janus
from seer.backends.janus_probe import CallCounter, precision_probe
from seer.prompts import DEFAULT_TEMPLATES


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_janus(tmp_path_factory.mktemp("janus22") / "tiny", seed=0)


def pics(seed: int, n: int = 2) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    return tuple(rng.integers(0, 256, (24, 20 + 4 * i, 3), dtype=np.uint8) for i in range(n))


def judge_context(seed: int) -> Context:
    return Context(DEFAULT_TEMPLATES.evaluator_text("make it red", "a cat"), pics(seed))


# ---------------------------------------------------------------- 1. fp32 master weights
@pytest.mark.slow
def test_master_weights_move_theta_like_float32_where_plain_bf16_does_not(tiny, monkeypatch):
    """10 AdamW steps at the 1B recipe's lr: with fp32 master weights a bf16 run changes the same entries by the same
    update as a float32 run; plain bf16 rounds most updates away (the measurement the bench prints)."""
    monkeypatch.setattr(janus_mod, "cpu_supports_bf16", lambda: True)  # emulated bf16: slow but exact
    r = precision_probe(tiny, steps=10, lr=1e-6)
    fp32, plain, master = r["float32"], r["bfloat16"], r["bfloat16_master_fp32"]
    assert fp32["changed_fraction"] > 0.9
    assert master["theta_dtype"] == master["optimizer_state_dtype"] == "float32"
    assert abs(master["changed_fraction"] - fp32["changed_fraction"]) < 0.01
    assert 0.9 <= master["update_norm_ratio"] <= 1.1 and master["cosine"] >= 0.99
    # the failure the option exists for: without it, few entries move and the update points elsewhere
    assert plain["optimizer_state_dtype"] == "bfloat16"
    assert plain["changed_fraction"] < 0.5 * fp32["changed_fraction"] and plain["cosine"] < 0.9


def test_master_weights_keep_phi_and_frozen_copies_in_the_compute_dtype(tiny, monkeypatch, tmp_path):
    monkeypatch.setattr(janus_mod, "cpu_supports_bf16", lambda: True)
    b = JanusBackend.load(tiny, dtype="bfloat16", master_weights="float32", image_temperature=0.0)
    assert {p.dtype for p in b.trainable_parameters()} == {torch.float32}
    assert {t.dtype for t in b.frozen_state().values()} == {torch.bfloat16}
    assert b.describe()["precision"] == {"weights": "bfloat16", "theta": "float32", "optimizer_state": "float32",
                                         "compute": "bfloat16"}
    ctx = judge_context(0)
    g = b.generate_text([ctx], 2, SamplingParams(max_new_tokens=3), seed=0)[0]
    logp, _ = b.token_logprobs([ctx] * 2, [c.token_ids for c in g])
    ref, _ = b.token_logprobs([ctx] * 2, [c.token_ids for c in g], reference=True)
    assert logp.requires_grad and torch.isfinite(logp).all() and torch.isfinite(ref).all()
    images = b.generate_images(["a red cat"], [0])
    assert images[0].shape == (8, 8, 3)
    b.save(tmp_path / "ckpt")  # a mixed-dtype model saves and loads back (θ rounded to the checkpoint dtype)
    again = JanusBackend.load(tmp_path / "ckpt")
    assert again.options.master_weights == "float32"
    assert {p.dtype for p in again.trainable_parameters()} == {torch.float32}
    with pytest.raises(BackendError, match="master_weights='float16'"):
        JanusBackend.load(tiny, master_weights="float16")


# ---------------------------------------------------------------- 2-3. batched decoding, shared prefill
def test_per_context_seeds_give_the_same_completions_in_a_batch_as_alone(tiny):
    b = JanusBackend.load(tiny)
    contexts = [Context("a red cat"), judge_context(1), Context("image A : <image> a dog", pics(2, 1))]
    seeds = [5, 6, 7]
    sp = SamplingParams(max_new_tokens=6)
    batch = b.generate_text(contexts, 3, sp, seed=seeds)
    for c, s, got in zip(contexts, seeds, batch, strict=True):
        alone = b.generate_text([c], 3, sp, seed=s)[0]
        assert [x.token_ids for x in got] == [x.token_ids for x in alone]
        for x, y in zip(got, alone, strict=True):
            np.testing.assert_allclose(x.logprobs, y.logprobs, rtol=1e-4, atol=1e-5)
    assert len({tuple(x.token_ids) for x in batch[0]}) > 1  # the G rows of a context draw different noise
    chunked = JanusBackend.load(tiny, max_batch_rows=3).generate_text(contexts, 3, sp, seed=seeds)
    assert [[x.token_ids for x in g] for g in chunked] == [[x.token_ids for x in g] for g in batch]
    # one int seed: context 0 is the same as alone; identical contexts still draw different noise
    same = b.generate_text([contexts[0], contexts[0]], 3, sp, seed=5)
    assert [x.token_ids for x in same[0]] == [x.token_ids for x in batch[0]]
    assert [x.token_ids for x in same[0]] != [x.token_ids for x in same[1]]


def test_judge_is_one_decode_loop_and_each_context_is_prefilled_once(tiny):
    """32 evaluator contexts (G = 8 x 4 queries) judged greedily: one prefill of batch 32, at most K - 1 decode
    steps, and each image encoded once; G = 4 samples of 3 contexts: prefill batch 3, decode batch 12."""
    b = JanusBackend.load(tiny)
    counter = CallCounter(b)
    judged = [judge_context(i) for i in range(32)]
    k = 5
    with counter.as_phase("judge"):
        verdicts = b.generate_text(judged, 1, SamplingParams(max_new_tokens=k, greedy=True), seed=list(range(32)))
    with counter.as_phase("rollout"):
        b.generate_text(judged[:3], 4, SamplingParams(max_new_tokens=k), seed=[1, 2, 3])
    counter.close()
    calls, encodes = counter.calls, counter.encodes
    assert calls["judge"][0] == 32 and set(calls["judge"][1:]) <= {32}
    assert 1 <= len(calls["judge"]) <= k  # prefill + at most k - 1 steps (the last token needs no forward)
    assert encodes["judge"] == [64]  # 2 images x 32 contexts, one encoder call
    assert calls["rollout"][0] == 3 and set(calls["rollout"][1:]) <= {12}
    assert encodes["rollout"] == [6]  # not 24: the 4 samples of a context share its prefill
    one = [b.generate_text([c], 1, SamplingParams(max_new_tokens=k, greedy=True))[0][0].token_ids
           for c in judged[:4]]
    assert one == [v[0].token_ids for v in verdicts[:4]]  # batching changes no greedy verdict


# ---------------------------------------------------------------- 5. prompt formats of the checkpoint
def test_prompts_match_the_janus_processor_for_understanding_and_generation(tiny):
    from transformers import JanusProcessor

    b = JanusBackend.load(tiny)
    proc = JanusProcessor(b.image_processor, b.tokenizer, use_default_system_prompt=True,
                          num_image_tokens=b.num_image_tokens)
    for n_images in (1, 2):
        text = " ".join(["image A : <image>", "image B : <image>"][:n_images]) + " which image ?"
        chat = b.options.chat_format.format(text=text.replace("<image>", proc.image_token))
        # a list of one text: transformers 5.18's processor splits a bare string differently
        want = proc(text=[chat], images=list(pics(n_images, n_images)))["input_ids"][0].tolist()
        assert b._prompt_ids(text) == want
        assert want[:3] == [b.bos_token_id] + b.tokenizer("You are", add_special_tokens=False)["input_ids"]
    prompt = "a red cat in the house"
    want = proc(text=[b.options.chat_format.format(text=prompt)], generation_mode="image")["input_ids"][0].tolist()
    assert b._prompt_ids(prompt, understanding=False) + [b.boi_token_id] == want
    none = JanusBackend.load(tiny, system_prompt="")
    assert none._prompt_ids("a cat") == b._prompt_ids("a cat", understanding=False)


def test_guidance_rows_are_padded_with_the_generation_config_pad_id(tiny, tmp_path):
    d = shutil.copytree(tiny, tmp_path / "pad")
    gen_file = d / "generation_config.json"
    cfg = json.loads(gen_file.read_text()) if gen_file.is_file() else {}
    unk = 3  # "<unk>": a pad id the tokenizer does not use, so the test sees which one the rows got
    gen_file.write_text(json.dumps({**cfg, "pad_token_id": unk}))
    b = JanusBackend.load(d)
    assert b.pad_token_id == 0 and b.image_pad_token_id == unk
    seen = []
    hook = b.janus.get_input_embeddings().register_forward_hook(lambda m, args, out: seen.append(args[0].clone()))
    b.generate_images(["a red cat"], [0])
    hook.remove()
    rows = seen[0]  # (2, L): conditional then unconditional row
    uncond = rows[1]
    inner = uncond[(uncond != b.bos_token_id) & (uncond != b.boi_token_id)]
    assert inner.numel() > 0 and set(inner.tolist()) == {unk}


# ---------------------------------------------------------------- 6. no deprecated cache argument
def test_no_future_warning_from_the_cache_argument(tiny):
    b = JanusBackend.load(tiny)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        b.generate_text([judge_context(0), Context("a cat")], 2, SamplingParams(max_new_tokens=4), seed=[0, 1])
        b.generate_images(["a cat"], [0])


# ---------------------------------------------------------------- 4. peft API
def test_peft_without_set_adapter_inference_mode_fails_clearly(tiny, monkeypatch):
    pytest.importorskip("peft")
    from peft import PeftModel

    def old_set_adapter(self, adapter_name):  # peft <= 0.18's signature
        raise AssertionError("not reached")

    monkeypatch.setattr(PeftModel, "set_adapter", old_set_adapter)
    with pytest.raises(BackendError, match=r"peft .* set_adapter\(\.\.\., inference_mode=\).*peft>=0\.19"):
        JanusBackend.load(tiny, lora={"r": 2})


def test_dependency_pins_admit_only_versions_with_the_apis_used():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    peft_pins = re.findall(r'"peft([^"]*)"', text)
    assert peft_pins and all(p.startswith(">=0.19") for p in peft_pins), peft_pins


# ---------------------------------------------------------------- 7. init --check
def test_init_check_loads_first_and_writes_nothing_when_it_fails(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(janus_mod, "cpu_supports_bf16", lambda: False)
    opts = tmp_path / "backend.yaml"
    opts.write_text("dtype: bfloat16\nmax_images: 2\n")
    out = tmp_path / "init"
    # bf16 recipe on a CPU without bf16: the check loads in float32 and says so; the checkpoint keeps bfloat16
    assert janus_mod.main(["init", str(tiny), str(out), "--options", str(opts), "--check", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "float32" in printed and '"params_total"' in printed
    assert json.loads((out / "backend.json").read_text())["options"]["dtype"] == "bfloat16"
    if not torch.cuda.is_available():
        bad = tmp_path / "init_cuda"
        assert janus_mod.main(["init", str(tiny), str(bad), "--check", "--device", "cuda"]) == 2
        assert "CUDA is not available" in capsys.readouterr().out
        assert not bad.exists()
    broken = shutil.copytree(tiny, tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    assert janus_mod.main(["init", str(broken), str(tmp_path / "init_broken"), "--check", "--device", "cpu"]) == 2
    assert "cannot load Janus weights" in capsys.readouterr().out
    assert not (tmp_path / "init_broken").exists()


# ---------------------------------------------------------------- the cost model counts what the backend does
@pytest.mark.slow
def test_cost_model_counts_the_calls_of_an_rlmt_step(tiny):
    """seer.stages.rlmt.rollouts + grpo_update on the tiny Janus (every reprompt taken as well formed, as the bench
    does): the measured sequential calls per phase never exceed janus_cost.sequential_calls, the image loop matches
    it exactly, and the batch sizes are the ones it names."""
    from seer.backends.janus_cost import Setting, sequential_calls
    from seer.config import RLMTConfig
    from seer.data import Sample
    from seer.prompts import Parsed
    from seer.stages import common, rlmt

    g, q, k, ibs = 3, 2, 4, 4
    policy = JanusBackend.load(tiny, image_batch_size=ibs)
    judge = JanusBackend.load(tiny)
    counter = CallCounter(policy, judge)
    policy.generate_text = counter.wrap(policy.generate_text, "rollout")
    policy.generate_images = counter.wrap(policy.generate_images, "images")
    judge.generate_text = counter.wrap(judge.generate_text, "judge")
    cfg = RLMTConfig(evaluator="e", samples="s", group_size=g, queries_per_step=q, max_new_tokens=k,
                     judge_max_new_tokens=k, groups_per_forward=1)
    samples = [Sample("a", "make it red", "a cat", "semantic_edit"), Sample("b", "make it red", "a dog", "x")]
    original = rlmt.parse_reprompt
    rlmt.parse_reprompt = lambda text: Parsed(True, "", text.strip() or "a cat")
    try:
        groups = rlmt.rollouts(policy, judge, cfg, samples, [1, 2], {t: 0.0 for t in common.TIME_KEYS})
    finally:
        rlmt.parse_reprompt = original
    with counter.as_phase("update"):
        common.grpo_update(policy, torch.optim.AdamW(policy.trainable_parameters(), lr=1e-6), groups, cfg,
                           common.Dist(), n_global=q)
    counter.close()
    got = counter.summary()
    model = sequential_calls(Setting("1b", "rlmt", group_size=g, queries_per_step=q, max_new_tokens=k,
                                     judge_max_new_tokens=k, image_batch_size=ibs, groups_per_forward=1,
                                     image_tokens=policy.num_image_tokens))
    for phase in ("rollout", "images", "judge", "update"):
        assert 1 <= got[phase]["sequential_calls"] <= model[phase]["sequential_calls"], (phase, got, model)
        assert set(got[phase]["batch_sizes"]) <= set(model[phase]["batch_sizes"]), (phase, got, model)
    assert got["images"]["sequential_calls"] == model["images"]["sequential_calls"]  # 16 steps x 2 batches
    assert got["update"]["sequential_calls"] == model["update"]["sequential_calls"]  # policy + reference per group
    assert got["judge"]["images_encoded"] == 2 * g * q  # each evaluator context's two images, encoded once


# ---------------------------------------------------------------- 9. the 7B judge shares the policy's base
def test_a_lora_judge_shares_the_policy_base_from_an_init_checkpoint_and_only_the_same_base(tiny, tmp_path):
    from seer.backends.janus import write_init_checkpoint

    pytest.importorskip("peft")
    init = write_init_checkpoint(tiny, tmp_path / "init", lora={"r": 2, "alpha": 4})
    policy = JanusBackend.load(init, adapter_name="policy")
    judge = JanusBackend.load(init, share_base_with=policy)  # no adapter trained yet: a fresh, frozen one
    assert judge.janus is policy.janus and judge.trainable_parameters() == []
    ctx, ids = judge_context(0), [[20, 21, 22]]
    with torch.no_grad():
        for p in policy.trainable_parameters():
            p.add_(0.3)  # the policy moves; the judge (a zero-B adapter) stays the base model
        with policy.peft_model.disable_adapter():
            base = policy.token_logprobs([ctx], ids)[0]
        torch.testing.assert_close(judge.token_logprobs([ctx], ids)[0], base)
        assert not torch.allclose(policy.token_logprobs([ctx], ids)[0], base)
    other = build_tiny_janus(tmp_path / "other", seed=1)
    foreign = write_init_checkpoint(other, tmp_path / "foreign", lora={"r": 2})
    with pytest.raises(BackendError, match="belongs to base weights"):
        JanusBackend.load(foreign, share_base_with=policy)


# ---------------------------------------------------------------- 8 (part). no all-reduce for unused parameters
SUM_GRADS_SCRIPT = """
import sys, torch
from seer.stages.common import Dist
d = Dist(cpu=True)
p = [torch.nn.Parameter(torch.zeros(3)) for _ in range(3)]
p[0].grad = torch.full((3,), float(d.rank + 1))        # both ranks used it
if d.rank == 1:
    p[1].grad = torch.full((3,), 5.0)                  # one rank used it: the other contributes zeros
d.sum_grads(p)                                         # p[2]: no rank used it (a text-only step's image encoder)
torch.save([None if q.grad is None else q.grad.tolist() for q in p], sys.argv[1] + f"/rank{d.rank}.pt")
"""


@pytest.mark.slow
def test_sum_grads_leaves_out_parameters_no_process_used(tmp_path):
    """Two gloo processes: a parameter with a gradient on any rank is summed; one with none anywhere keeps
    grad None (no traffic, no AdamW state: as in one process)."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = Path(__file__).resolve().parents[1]
    procs = []
    for rank in range(2):
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2",
               "RANK": str(rank), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": "2", "OMP_NUM_THREADS": "1",
               "PYTHONPATH": str(root)}
        procs.append(subprocess.Popen([sys.executable, "-c", SUM_GRADS_SCRIPT, str(tmp_path)], env=env, cwd=root,
                                      stderr=subprocess.PIPE, text=True))
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert got == [[3.0] * 3, [5.0] * 3, None]


def test_scoring_encodes_a_groups_images_once_with_the_same_logprobs_and_gradients(tiny):
    """token_logprobs over G rows of one Context object encodes its two images once; the log-probs and θ's gradients
    equal those of G separate (equal-valued) contexts, each encoded on its own."""
    b = JanusBackend.load(tiny)
    shared = judge_context(4)
    copies = [Context(shared.text, shared.images) for _ in range(3)]
    ids = [[20, 21, 22], [23, 24], [25]]
    results = []
    for contexts in ([shared] * 3 + [Context("a cat")], copies + [Context("a cat")]):
        counter = CallCounter(b)
        for p in b.trainable_parameters():
            p.grad = None
        logp, mask = b.token_logprobs(contexts, ids + [[26, 27]])
        (logp * mask).sum().backward()
        counter.close()
        results.append((logp.detach(), [p.grad.clone() for p in b.trainable_parameters() if p.grad is not None],
                        counter.encodes["other"]))
    (lp_shared, g_shared, enc_shared), (lp_copies, g_copies, enc_copies) = results
    assert enc_shared == [2] and enc_copies == [6]
    torch.testing.assert_close(lp_shared, lp_copies, rtol=1e-5, atol=1e-6)
    assert len(g_shared) == len(g_copies) > 0
    for a, c in zip(g_shared, g_copies, strict=True):
        torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-6)
