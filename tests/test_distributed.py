"""Two CPU processes (gloo) through `accelerate launch`: queries are sharded, gradients all-reduced, so both
ranks end every step with identical θ, and the result matches a single-process run of the same config."""

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
import os, sys, torch
torch.set_num_threads(1)
from pathlib import Path
import stub_backend  # registers the "stub" backend kind
from seer.config import RLVRConfig, load_config
from seer.stages import common, rlvr

root, out = Path(sys.argv[1]), Path(sys.argv[2])
seen, live = [], {}
original = rlvr.rollouts
def recording(backend, cfg, images, qs, seeds, timings):
    seen.extend(q.id for q in qs)
    live["backend"] = backend
    return original(backend, cfg, images, qs, seeds, timings)
rlvr.rollouts = recording
cfg = load_config(RLVRConfig, None, ["--model", str(root / "base"), "--quadruplets", str(root / "quadruplets.jsonl"),
    "--output_dir", str(out / "runs"), "--group_size", "4", "--queries_per_step", "4", "--epochs_phase1", "2",
    "--epochs_phase2", "1", "--lr_phase1", "0.1", "--lr_phase2", "0.05", "--tensorboard", "false"])
rlvr.train(cfg)
dist = common.Dist()
theta = [p.detach().clone() for p in live["backend"].trainable_parameters()]
torch.save({"seen": seen, "world": dist.world, "theta": theta}, out / f"rank{dist.rank}.pt")
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, env, cwd):
    res = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def test_two_cpu_processes_keep_identical_weights(tmp_path):
    if shutil.which("accelerate") is None:
        pytest.fail("the accelerate launcher is not on PATH (pip install accelerate)")
    data = write_stub_data(tmp_path / "data", n_phase1=8, n_phase2=4)
    script = tmp_path / "train_ddp.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    out2, out1 = tmp_path / "two", tmp_path / "one"
    out2.mkdir()
    out1.mkdir()
    run(["accelerate", "launch", "--config_file", str(ROOT / "recipes" / "accelerate" / "cpu_ddp.yaml"),
         "--main_process_port", str(free_port()), str(script), str(data["base"].parent), str(out2)], env, tmp_path)
    run([sys.executable, str(script), str(data["base"].parent), str(out1)], env, tmp_path)

    r0, r1, single = (torch.load(p) for p in (out2 / "rank0.pt", out2 / "rank1.pt", out1 / "rank0.pt"))
    assert r0["world"] == r1["world"] == 2 and single["world"] == 1
    # each step's 4 queries were split 2 + 2: the ranks saw different queries, together all of them
    assert len(r0["seen"]) == len(r1["seen"]) == 10  # (8/4 x 2 epochs + 4/4 x 1 epoch) steps x 2 queries
    steps = [(set(r0["seen"][i : i + 2]), set(r1["seen"][i : i + 2])) for i in range(0, 10, 2)]
    assert all(not (a & b) for a, b in steps)
    assert sorted(r0["seen"] + r1["seen"]) == sorted(single["seen"])
    # the ranks' live parameters after training: identical to each other, and equal (up to float summation order)
    # to one process taking the same global batches
    changed = False
    initial = torch.load(data["base"] / "stub.pt")["policy"].values()
    for a, b, c, init in zip(r0["theta"], r1["theta"], single["theta"], initial, strict=True):
        assert torch.equal(a, b)
        assert torch.allclose(a, c, atol=1e-5)
        changed |= not torch.equal(a, init)
    assert changed
    # only rank 0 wrote the records, and its metrics are reduced over both ranks (4 queries per step)
    metrics = [json.loads(x) for x in (out2 / "runs" / "seer" / "rlvr" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5] and {m["queries"] for m in metrics} == {4}
