"""Issue 25, the bad-input suite: valid recipes, samples/quadruplets files and pairs files, mutated at random (bytes,
encodings, types, missing and extra fields, huge values). Each mutant either loads or fails with the package's own
error naming the file; never another exception. (The run-folder tests in test_reliability.py show that such an
error loses nothing.)"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs
from stub_backend import write_stub_data

from seer.annotate.demo import write_demo_pairs
from seer.annotate.pairs import load_pairs
from seer.config import ConfigError, RLMTConfig, RLVRConfig, load_config
from seer.data import DataError, load_quadruplets, load_samples

SETTINGS = settings(max_examples=120, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

json_scalars = (hs.none() | hs.booleans() | hs.integers(min_value=-(2**70), max_value=2**70)
                | hs.floats(allow_nan=True, allow_infinity=True) | hs.text(max_size=20)
                | hs.sampled_from(["\ud800 x", "a\x00b", "../../etc/passwd", "/abs/x.png", "", " ", "1", "true",
                                   "nan", "1e999", "x" * 5000]))
json_values = hs.recursive(json_scalars, lambda inner: hs.lists(inner, max_size=3)
                           | hs.dictionaries(hs.text(max_size=5), inner, max_size=3), max_leaves=6)


def _mutate_bytes(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """Apply (kind, position, byte) edits: 0 replace, 1 insert, 2 delete."""
    b = bytearray(data)
    for kind, pos, byte in edits:
        if not b:
            b.append(byte)
            continue
        pos %= len(b)
        if kind == 0:
            b[pos] = byte
        elif kind == 1:
            b.insert(pos, byte)
        else:
            del b[pos]
    return bytes(b)


byte_edits = hs.lists(hs.tuples(hs.integers(0, 2), hs.integers(0, 10**6), hs.integers(0, 255)), min_size=1,
                      max_size=6)


def _mutate_record(records: list[dict], line: int, op: int, field: str, value) -> list[str]:
    recs = [dict(r) for r in records]
    rec = recs[line % len(recs)]
    keys = sorted(rec)
    key = keys[hash(field) % len(keys)] if keys else field
    if op == 0:  # a field gets any JSON value
        rec[key] = value
    elif op == 1:  # a field goes missing
        rec.pop(key, None)
    elif op == 2:  # an extra field
        rec[field or "extra"] = value
    else:  # the whole line is some other JSON value
        return [json.dumps(r, ensure_ascii=True) for r in recs[:line % len(recs)]] + [json.dumps(value)]
    return [json.dumps(r, ensure_ascii=bool(op % 2)) for r in recs]


def _expect_clean(load, path: Path, errors=(DataError,)):
    try:
        load(path)
    except errors as e:
        assert str(path) in str(e), f"error does not name the file: {e}"


# -- data files ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stub(tmp_path_factory):
    return write_stub_data(tmp_path_factory.mktemp("stub"))


@pytest.mark.parametrize("kind", ["samples", "quadruplets"])
@SETTINGS
@given(edits=byte_edits)
def test_data_files_with_mutated_bytes(stub, tmp_path_factory, kind, edits):
    src = stub[kind]
    path = src.with_name(f"mut-{kind}.jsonl")  # beside the original: image paths stay valid
    path.write_bytes(_mutate_bytes(src.read_bytes(), edits))
    _expect_clean(load_samples if kind == "samples" else load_quadruplets, path)


@pytest.mark.parametrize("kind", ["samples", "quadruplets"])
@SETTINGS
@given(line=hs.integers(0, 20), op=hs.integers(0, 3), field=hs.text(max_size=8), value=json_values)
def test_data_files_with_mutated_records(stub, kind, line, op, field, value):
    src = stub[kind]
    records = [json.loads(x) for x in src.read_text().splitlines()]
    path = src.with_name(f"mut-{kind}.jsonl")
    path.write_text("\n".join(_mutate_record(records, line, op, field, value)) + "\n", encoding="utf-8",
                    errors="surrogatepass")
    _expect_clean(load_samples if kind == "samples" else load_quadruplets, path)


# -- pairs files ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return write_demo_pairs(tmp_path_factory.mktemp("pairs") / "p", n_cases=2, images="shapes")


@SETTINGS
@given(line=hs.integers(0, 20), op=hs.integers(0, 3), field=hs.text(max_size=8), value=json_values)
def test_pairs_files_with_mutated_records(pairs, line, op, field, value):
    records = [json.loads(x) for x in pairs.read_text().splitlines()]
    path = pairs.with_name("mut.jsonl")
    path.write_text("\n".join(_mutate_record(records, line, op, field, value)) + "\n", encoding="utf-8",
                    errors="surrogatepass")
    _expect_clean(load_pairs, path)


@SETTINGS
@given(edits=byte_edits)
def test_pairs_files_with_mutated_bytes(pairs, edits):
    path = pairs.with_name("mut.jsonl")
    path.write_bytes(_mutate_bytes(pairs.read_bytes(), edits))
    _expect_clean(load_pairs, path)


# -- recipes --------------------------------------------------------------------------------------------------------
RECIPE = "model: m\nquadruplets: q.jsonl\ngroup_size: 4\nlr_phase1: 1e-4\nbeta: 0.04\ntemplates:\n  system: ''\n"
yaml_scalars = hs.sampled_from([".nan", ".inf", "-.inf", "1e999", "~", "null", "true", "[1, 2]", "{a: 1}", "'x'",
                                "0", "-1", str(10**30), str(-(10**400)), "1e-4", "'\\ud800'", "&a 1", "*a",
                                "!!binary x", "!!python/object:os.system x", "\"\\x00\""])


@SETTINGS
@given(key=hs.sampled_from(["group_size", "lr_phase1", "beta", "model", "templates", "seed", "dry_run", "extra",
                            "templates.system", "both_orders", "temperature", "device"]),
       value=yaml_scalars | hs.text(max_size=10), duplicate=hs.booleans())
def test_recipes_with_mutated_values(tmp_path_factory, key, value, duplicate):
    path = tmp_path_factory.mktemp("r") / "r.yaml"
    head, _, sub = key.partition(".")
    line = f"{head}:\n  {sub}: {value}\n" if sub else f"{head}: {value}\n"
    path.write_text(RECIPE + line + (line if duplicate else ""), encoding="utf-8", errors="surrogatepass")
    for cls in (RLVRConfig, RLMTConfig):
        _expect_clean(lambda p, cls=cls: load_config(cls, p), path, (ConfigError,))


@SETTINGS
@given(edits=byte_edits)
def test_recipes_with_mutated_bytes(tmp_path_factory, edits):
    path = tmp_path_factory.mktemp("r") / "r.yaml"
    path.write_bytes(_mutate_bytes(RECIPE.encode(), edits))
    _expect_clean(lambda p: load_config(RLVRConfig, p), path, (ConfigError,))


@SETTINGS
@given(key=hs.sampled_from(["lr_phase1", "temperature", "epsilon", "beta", "grad_clip", "group_size", "seed"]),
       value=hs.floats() | hs.integers(min_value=-(2**1100), max_value=2**1100) | hs.text(max_size=12))
def test_flags_with_any_value(key, value):
    try:
        cfg = load_config(RLVRConfig, None, ["--model", "m", "--quadruplets", "q", f"--{key}", str(value)])
    except ConfigError:
        return
    assert all(math.isfinite(v) for v in vars(cfg).values() if isinstance(v, float))


# -- through the command line: exit code 2, `seer: error:` naming the file, nothing lost ----------------------------
def _snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(stub):
    from seer.cli import main

    flags = ["--model", str(stub["base"]), "--quadruplets", str(stub["quadruplets"]), "--output_dir",
             str(stub["runs"]), "--group_size", "2", "--queries_per_step", "2", "--max_steps", "1",
             "--tensorboard", "false", "--name", "keep"]
    assert main(["train", "rlvr", *flags]) == 0
    return flags


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(line=hs.integers(0, 20), op=hs.integers(0, 3), field=hs.text(max_size=8), value=json_values)
def test_overwrite_with_a_mutated_data_file_loses_nothing(stub, finished_run, capsys, line, op, field, value):
    from seer.cli import main

    records = [json.loads(x) for x in stub["quadruplets"].read_text().splitlines()]
    path = stub["quadruplets"].with_name("mut-cli.jsonl")
    path.write_text("\n".join(_mutate_record(records, line, op, field, value)) + "\n", encoding="utf-8",
                    errors="surrogatepass")
    run = stub["runs"] / "keep" / "rlvr"
    before = _snapshot(run)
    capsys.readouterr()
    # --dry-run: every check of a real --overwrite, and a valid mutant does not replace the run
    code = main(["train", "rlvr", *finished_run, "--quadruplets", str(path), "--overwrite", "--dry-run"])
    err = capsys.readouterr().err
    assert code in (0, 2), err
    if code == 2:
        assert err.startswith("seer: error: ") and str(path) in err, err
    assert _snapshot(run) == before


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(line=hs.integers(0, 20), op=hs.integers(0, 3), field=hs.text(max_size=8), value=json_values)
def test_annotate_create_with_a_mutated_pairs_file(pairs, tmp_path_factory, capsys, line, op, field, value):
    from seer.cli import main

    records = [json.loads(x) for x in pairs.read_text().splitlines()]
    path = pairs.with_name("mut-cli.jsonl")
    path.write_text("\n".join(_mutate_record(records, line, op, field, value)) + "\n", encoding="utf-8",
                    errors="surrogatepass")
    out = tmp_path_factory.mktemp("study") / "s"
    capsys.readouterr()
    code = main(["annotate", "create", "--pairs", str(path), "--out", str(out), "--annotators", "1"])
    err = capsys.readouterr().err
    assert code in (0, 2), err
    if code == 2:
        assert "seer: error: " in err and str(path) in err, err
        assert not out.exists() and not [p for p in out.parent.iterdir()]  # no half-made study or temp folder
