"""Issue 25's command-line cases, tried as a user would (in-process, on the stub backend of tests/): for each, the
exit code, the last line of stderr and how many files of the existing runs changed or vanished. Prints one line per
case and a total; exits 1 unless every case is a clear error (exit 2, `seer: error: ...`) that lost nothing.

    PYTHONPATH=. python bench/bad_input_battery.py
"""

import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from stub_backend import write_stub_data  # noqa: E402

from seer.cli import main  # noqa: E402

root = Path(tempfile.mkdtemp())
d = write_stub_data(root)
base = ["--model", str(d["base"]), "--quadruplets", str(d["quadruplets"]), "--output_dir", str(d["runs"]),
        "--group_size", "2", "--queries_per_step", "2", "--tensorboard", "false", "--name", "keep"]
assert main(["train", "rlvr", *base, "--max_steps", "2"]) == 0
rlmt = ["--evaluator", str(d["judge"]), "--samples", str(d["samples"]), "--output_dir", str(d["runs"]),
        "--group_size", "2", "--tensorboard", "false", "--max_steps", "1"]
assert main(["train", "rlmt", *rlmt, "--name", "pol"]) == 0

mine = root / "mine"  # a user's folder that no command may write into
(mine / "data").mkdir(parents=True)
(mine / "data" / "samples.jsonl").write_text("the user's own\n")


def snap():
    return {p: p.read_bytes() for folder in (d["runs"], mine) for p in sorted(folder.rglob("*"))
            if p.is_file() and ".replaced" not in str(p)}

def bad_file(name, data):
    p = root / name
    if isinstance(data, bytes):
        p.write_bytes(data)
    else:
        p.write_text(data)
    return str(p)

q = d["quadruplets"].read_text()
cases = {
    "overwrite lr nan": ["train", "rlvr", *base, "--overwrite", "--lr_phase1", "nan"],
    "overwrite lr inf": ["train", "rlvr", *base, "--overwrite", "--lr_phase1", "inf"],
    "overwrite wandb": ["train", "rlvr", *base, "--overwrite", "--wandb", "true"],
    "temperature nan": ["train", "rlvr", *base, "--overwrite", "--temperature", "nan"],
    "epsilon nan": ["train", "rlvr", *base, "--overwrite", "--epsilon", "nan"],
    "beta nan": ["train", "rlvr", *base, "--overwrite", "--beta", "nan"],
    "device cuda": ["train", "rlvr", *base, "--overwrite", "--device", "cuda"],
    "device bogus": ["train", "rlvr", *base, "--overwrite", "--device", "tpu9"],
    "non-utf8 data": ["train", "rlvr", *base, "--overwrite", "--quadruplets",
                      bad_file("q8.jsonl", q.encode().replace(b"a cat 1", b"a c\xe9t 1"))],
    "folder as data": ["train", "rlvr", *base, "--overwrite", "--quadruplets", str(root)],
    "phase true": ["train", "rlvr", *base, "--overwrite", "--quadruplets",
                   bad_file("qt.jsonl", q.replace('"phase": 1', '"phase": true', 1))],
    "duplicate yaml key": ["train", "rlvr", *base, "--overwrite", "--config",
                           bad_file("dup.yaml", "lr_phase1: 1e-4\nlr_phase1: 1e-2\n")],
    "yaml not utf8": ["train", "rlvr", *base, "--overwrite", "--config", bad_file("n8.yaml", b"seed: \xff\n")],
    "recipe folder": ["train", "rlvr", *base, "--overwrite", "--config", str(root)],
    "resume changed lr": ["train", "rlvr", *base, "--resume", "--lr_phase1", "0.5"],
    "resume changed data": ["train", "rlvr", *base, "--resume", "--quadruplets",
                            bad_file("quadruplets_cut.jsonl", "\n".join(q.splitlines()[:-2]) + "\n")],
    "resume + overwrite": ["train", "rlvr", *base, "--resume", "--overwrite"],
    "evaluator = base": ["train", "rlmt", *rlmt, "--name", "p2", "--evaluator", str(d["base"])],
    "evaluator = rlmt run": ["train", "rlmt", *rlmt, "--name", "p3", "--evaluator", str(d["runs"] / "pol" / "rlmt")],
    "reprompt images dir": ["reprompt", "--model", str(d["judge"]), "--instruction", "make it glow", "--prompt",
                            "a cat", "--images", str(root)],
    "generate out dir": ["generate", "--model", str(d["base"]), "--prompt", "a cat", "--out", str(root)],
    "generate cuda": ["generate", "--model", str(d["base"]), "--prompt", "a cat", "--out", str(root / "x.png"),
                      "--device", "cuda"],
    "group_size 2^70": ["train", "rlvr", *base, "--overwrite", "--group_size", str(2**70)],
    "lr 1e999": ["train", "rlvr", *base, "--overwrite", "--lr_phase1", "1e999"],
}
from seer.annotate.demo import write_demo_pairs  # noqa: E402

pairs = write_demo_pairs(root / "pairs", n_cases=2, images="shapes")
lines = pairs.read_text().splitlines()


def pairs_file(name, old, new):
    return bad_file(f"pairs/{name}", "\n".join([lines[0].replace(old, new, 1), *lines[1:]]) + "\n")


first = json.loads(lines[0])
(root / "outside.png").write_bytes((pairs.parent / first["image_system"]).read_bytes())
cases.update({
    "reproduce into user dir": ["reproduce", "--quick", "--out", str(mine)],
    "reproduce --resume user dir": ["reproduce", "--quick", "--out", str(mine), "--resume"],
    "reproduce --overwrite user": ["reproduce", "--quick", "--out", str(mine), "--overwrite"],
    "build-data into user dir": ["world", "build-data", "--out", str(mine)],
    "annotate lone surrogate": ["annotate", "create", "--out", str(root / "s1"), "--pairs",
                                pairs_file("p1.jsonl", '"prompt": "', '"prompt": "\\ud800')],
    "annotate outside path": ["annotate", "create", "--out", str(root / "s2"), "--pairs",
                              pairs_file("p2.jsonl", first["image_system"], "../outside.png")],
    "annotate same image 2 ways": ["annotate", "create", "--out", str(root / "s3"), "--pairs",
                                   pairs_file("p3.jsonl", first["image_opponent"],
                                              first["image_system"].replace("/", "/./", 1))],
    "annotate out = user dir": ["annotate", "create", "--out", str(mine), "--pairs", str(pairs)],
})
clean = lost = 0
for name, argv in cases.items():
    before = snap()
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
    except BaseException as e:
        code = f"raised {type(e).__name__}"
    first = (err.getvalue().strip().splitlines() or [""])[-1]
    ok = code == 2 and first.startswith("seer: error:")
    n_lost = sum(1 for p in before if p not in snap() or snap()[p] != before[p])
    clean += ok
    lost += n_lost
    print(f"{'OK ' if ok else 'BAD'} {name:24s} exit={code} lost={n_lost} | {first[:150]}")
print(f"{len(cases)} cases, {clean} clear errors (exit 2, seer: error:), {lost} files lost")
sys.exit(0 if clean == len(cases) and lost == 0 else 1)
