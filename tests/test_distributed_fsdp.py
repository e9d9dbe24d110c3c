"""θ sharded with FSDP2 over two CPU processes (gloo) through `accelerate launch` with recipes/accelerate/fsdp.yaml:
each process holds half of θ, and a few RLVR and RLMT steps give the metrics, the checkpoint and the final model of
one process taking the same global batches (within float summation order). The step sizes are chosen so that one
batch has fewer queries than processes (the padding query) and a process runs several backwards in one step
(groups_per_forward 1: gradients accumulate locally and are reduced once)."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from stub_backend import write_stub_data

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = '''
import sys, torch
torch.set_num_threads(1)
from pathlib import Path
import seer, stub_backend  # registers the "stub" backend kind
from seer.config import RLMTConfig, RLVRConfig, load_config
from seer.stages import common, rlmt, rlvr

stage, out, args = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
live = {}
original = common.grpo_update
def recording(backend, *a, **kw):
    live["backend"] = backend
    return original(backend, *a, **kw)
common.grpo_update = recording
module = rlvr if stage == "rlvr" else rlmt
module.train(load_config(RLVRConfig if stage == "rlvr" else RLMTConfig, None, args))
dist = common.Dist()
live["theta"] = live["backend"].trainable_parameters()  # θ as each process holds it between steps
local = [(tuple(p.shape), p.to_local().numel() if hasattr(p, "to_local") else p.numel()) for p in live["theta"]]
torch.save({"world": dist.world, "sharded": dist.sharded, "local": local, "seer": seer.__file__},
           out / f"rank{dist.rank}.pt")
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, env, cwd):
    res = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-4000:]
    return res


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def launch(tmp_path, name, stage, args, sharded):
    script = tmp_path / "train_fsdp.py"
    script.write_text(SCRIPT)
    out = tmp_path / name
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    for var in ("WORLD_SIZE", "ACCELERATE_USE_FSDP", "FSDP_VERSION"):
        env.pop(var, None)
    full = [*args, "--output_dir", str(out / "runs")]
    if sharded:
        cmd = ["accelerate", "launch", "--config_file", str(ROOT / "recipes" / "accelerate" / "fsdp.yaml"),
               "--main_process_port", str(free_port()), str(script), stage, str(out), *full]
    else:
        cmd = [sys.executable, str(script), stage, str(out), *full]
    run(cmd, env, tmp_path)
    return out


def check_sharded_equals_single(two, one, stage):
    r0, r1 = torch.load(two / "rank0.pt"), torch.load(two / "rank1.pt")
    single = torch.load(one / "rank0.pt")
    assert r0["seer"].startswith(str(ROOT)), r0["seer"]  # the worktree's seer, not an installed copy
    assert r0["world"] == r1["world"] == 2 and r0["sharded"] and r1["sharded"] and not single["sharded"]
    # each process holds half of every θ tensor (the stub's 14 x 14 tables split by rows), one process all of it
    for r in (r0, r1):
        assert sum(n for _, n in r["local"]) * 2 == sum(n for _, n in single["local"])
        assert all(n * 2 == torch.Size(shape).numel() for shape, n in r["local"])
    run2, run1 = two / "runs" / "seer" / stage, one / "runs" / "seer" / stage
    m2, m1 = read_jsonl(run2 / "metrics.jsonl"), read_jsonl(run1 / "metrics.jsonl")
    assert [m["step"] for m in m2] == [m["step"] for m in m1] and len(m1) >= 3
    keys = ["loss", "grad_norm", "reward_mean", "kl", "clip_fraction", "queries", "completion_length_mean"]
    for a, b in zip(m2, m1, strict=True):
        for k in keys:
            assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-6), (a["step"], k, a[k], b[k])
    # the checkpoint and the final model hold the full θ, equal to the single process's; the optimizer state too
    t2, t1 = torch.load(run2 / "state" / "theta.pt"), torch.load(run1 / "state" / "theta.pt")
    assert [t.shape for t in t2] == [t.shape for t in t1]
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(t2, t1, strict=True))
    o2, o1 = torch.load(run2 / "state" / "optimizer.pt"), torch.load(run1 / "state" / "optimizer.pt")
    for i, s in o1["state"].items():
        assert torch.allclose(o2["state"][i]["exp_avg_sq"], s["exp_avg_sq"], atol=1e-6, rtol=1e-4)
    f2, f1 = torch.load(run2 / "model" / "stub.pt"), torch.load(run1 / "model" / "stub.pt")
    assert all(torch.allclose(f2["policy"][k], f1["policy"][k], atol=1e-5) for k in f1["policy"])
    return run2, run1


@pytest.fixture
def accelerate_cli():
    if shutil.which("accelerate") is None:
        pytest.fail("the accelerate launcher is not on PATH (pip install accelerate)")


def test_rlvr_sharded_matches_one_process(tmp_path, accelerate_cli):
    # 7 phase-1 quadruplets in steps of 3: the third step has 1 query for 2 processes (rank 1 pads)
    data = write_stub_data(tmp_path / "data", n_phase1=7, n_phase2=3)
    args = ["--model", str(data["base"]), "--quadruplets", str(data["quadruplets"]), "--group_size", "4",
            "--queries_per_step", "3", "--epochs_phase1", "1", "--epochs_phase2", "1", "--lr_phase1", "0.1",
            "--lr_phase2", "0.05", "--groups_per_forward", "1", "--grad_clip", "0.5", "--tensorboard", "false"]
    two = launch(tmp_path, "two", "rlvr", args, sharded=True)
    one = launch(tmp_path, "one", "rlvr", args, sharded=False)
    run2, _ = check_sharded_equals_single(two, one, "rlvr")
    # the sharded run's phase-1 model is whole too
    p2 = torch.load(run2 / "phase1_model" / "stub.pt")["policy"]
    p1 = torch.load(one / "runs" / "seer" / "rlvr" / "phase1_model" / "stub.pt")["policy"]
    assert all(torch.allclose(p2[k], p1[k], atol=1e-5) for k in p1)


def test_rlmt_sharded_matches_one_process(tmp_path, accelerate_cli):
    # 5 samples in steps of 4: the second step has 1 query for 2 processes
    data = write_stub_data(tmp_path / "data", n_samples=5)
    args = ["--evaluator", str(data["judge"]), "--samples", str(data["samples"]), "--group_size", "4",
            "--queries_per_step", "4", "--epochs", "2", "--lr", "0.1", "--tensorboard", "false"]
    two = launch(tmp_path, "two", "rlmt", args, sharded=True)
    one = launch(tmp_path, "one", "rlmt", args, sharded=False)
    check_sharded_equals_single(two, one, "rlmt")


@pytest.mark.parametrize("kind", ["token_umm", "janus"])
def test_backends_that_cannot_be_sharded_are_refused_by_name(kind):
    from seer.config import ConfigError
    from seer.stages.common import Sharding

    backend = type("B", (), {"kind": kind})()
    with pytest.raises(ConfigError, match=f"the {kind} backend cannot be sharded yet"):
        Sharding(backend, dist=None, device="cpu")  # refused before any process group is touched
