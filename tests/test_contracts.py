"""Tier 1 tests of the shared contracts: data schema errors, prompt parsing, Context, patch codebook, atomic IO."""

import json

import numpy as np
import pytest

from seer.backends.base import BackendError, Context, check_image, load_backend, write_backend_meta
from seer.backends.image_tokenizer import PatchCodebook
from seer.data import (
    CATEGORIES,
    DataError,
    Sample,
    difficulty,
    load_quadruplets,
    load_samples,
    naive_concat,
    save_image,
    write_jsonl,
)
from seer.io import atomic_replace_dir, atomic_write_text
from seer.prompts import DEFAULT_TEMPLATES, Templates, parse_reprompt, parse_verdict

# -- prompts -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, ok, answer",
    [
        ("<think> a is ice , b is not </think> <answer> A </answer>", True, "A"),
        ("<think></think><answer>B</answer>", True, "B"),
        ("<think> x </think> <answer> C </answer>", False, None),
        ("<answer> A </answer>", False, None),
        ("<think> x </think> <answer> A </answer> trailing", False, None),
        ("", False, None),
        ("<think> x <answer> A </answer>", False, None),
    ],
)
def test_parse_verdict(text, ok, answer):
    p = parse_verdict(text)
    assert (p.ok, p.answer) == (ok, answer)


@pytest.mark.parametrize(
    "text, ok, answer",
    [
        ("<think> cold means ice </think> <reprompt> an  ice cat </reprompt>", True, "an ice cat"),
        ("<think> x </think> <reprompt>   </reprompt>", False, None),
        ("<reprompt> a cat </reprompt>", False, None),
        ("<think> x </think> a cat", False, None),
    ],
)
def test_parse_reprompt(text, ok, answer):
    p = parse_reprompt(text)
    assert (p.ok, p.answer) == (ok, answer)


def test_templates_fill_and_validate():
    t = DEFAULT_TEMPLATES.evaluator_text("", "a cat")
    assert t.count("<image>") == 2 and "instruction : none" in t and "a cat" in t
    r = DEFAULT_TEMPLATES.reprompt_text("make it cold", "a cat")
    assert "make it cold" in r and "<image>" not in r
    with pytest.raises(ValueError, match="two <image>"):
        Templates(evaluator="<image> {instruction} {prompt}")
    with pytest.raises(ValueError, match="{prompt}"):
        Templates(reprompt="{instruction} only")


# -- context and images ------------------------------------------------------------------------------------------


def test_context_checks_images():
    img = np.zeros((8, 8, 3), np.uint8)
    Context("<image> and <image>", (img, img))
    with pytest.raises(BackendError, match="2 <image> placeholder"):
        Context("<image> and <image>", (img,))
    with pytest.raises(BackendError, match=r"shape \(H, W, 3\)"):
        Context("<image>", (np.zeros((8, 8), np.uint8),))
    with pytest.raises(BackendError, match="uint8"):
        check_image(np.zeros((8, 8, 3), np.float32))


def test_load_backend_errors(tmp_path):
    with pytest.raises(BackendError, match="does not exist"):
        load_backend(tmp_path / "nope")
    with pytest.raises(BackendError, match="backend.json: missing"):
        load_backend(tmp_path)
    write_backend_meta(tmp_path, "martian")
    with pytest.raises(BackendError, match="unknown backend kind 'martian'"):
        load_backend(tmp_path)


# -- data schema -------------------------------------------------------------------------------------------------


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def _sample(**kw):
    d = {"id": "s1", "instruction": "make it cold", "prompt": "a cat", "category": "attribute_reasoning"}
    d.update(kw)
    return json.dumps(d)


def test_samples_load_and_derived_fields(tmp_path):
    f = _write(tmp_path / "s.jsonl", [_sample(), "", _sample(id="s2", category="material_synthesis")])
    s = load_samples(f)
    assert [x.id for x in s] == ["s1", "s2"]
    assert s[0].difficulty == "hard" and s[1].difficulty == "simple"
    assert s[0].naive_prompt == "make it cold a cat" == naive_concat(" make it cold ", "a cat ")
    assert {difficulty(c) for c in CATEGORIES} == {"simple", "hard"}


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", r"s.jsonl:2: not valid JSON"),
        ("[1, 2]", r"s.jsonl:2: expected a JSON object"),
        (_sample(id="s9", category="cooking"), r"s.jsonl:2: field 'category' is 'cooking'; known: material_synthesis"),
        (_sample(id="s9", prompt="  "), r"s.jsonl:2: field 'prompt' is empty"),
        (json.dumps({"id": "s9", "prompt": "a cat", "category": "semantic_edit"}), r"s.jsonl:2: missing field"),
        (_sample(id="s9", colour="red"), r"s.jsonl:2: unknown field\(s\) \['colour'\]"),
        (_sample(), r"s.jsonl:2: duplicate id 's1' \(first on line 1\)"),
        (_sample(id="s9", split="dev"), r"field 'split' is 'dev'"),
        (_sample(id=7), r"field 'id' must be a string"),
        (_sample(id="s9", image="missing.png"), r"image file .*missing.png not found"),
    ],
)
def test_samples_errors_name_file_line_field(tmp_path, line, message):
    f = _write(tmp_path / "s.jsonl", [_sample(), line])
    with pytest.raises(DataError, match=message):
        load_samples(f)


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_samples(tmp_path / "none.jsonl")
    with pytest.raises(DataError, match="no records"):
        load_samples(_write(tmp_path / "e.jsonl", [""]))


def test_quadruplets_roundtrip_and_phase_rules(tmp_path):
    img = np.full((4, 4, 3), 7, np.uint8)
    save_image(tmp_path / "p.png", img)
    save_image(tmp_path / "n.png", img)
    base = {"prompt": "a cat", "category": "semantic_edit", "image_chosen": "p.png", "image_rejected": "n.png"}
    write_jsonl(tmp_path / "q.jsonl", [{"id": "q1", "phase": 1, **base}, {"id": "q2", "phase": 2,
                                                                          "instruction": "add a crown", **base}])
    q = load_quadruplets(tmp_path / "q.jsonl")
    assert q[0].instruction == "" and q[1].phase == 2
    _write(tmp_path / "bad.jsonl", [json.dumps({"id": "q3", "phase": 2, **base})])
    with pytest.raises(DataError, match="bad.jsonl:1: field 'instruction' is empty"):
        load_quadruplets(tmp_path / "bad.jsonl")
    _write(tmp_path / "bad3.jsonl", [json.dumps({"id": "q3", "phase": 3, **base})])
    with pytest.raises(DataError, match="field 'phase' is 3; expected 1 or 2"):
        load_quadruplets(tmp_path / "bad3.jsonl")


def test_write_jsonl_drops_none_and_roundtrips(tmp_path):
    s = Sample(id="a", instruction="make it cold", prompt="a cat", category="attribute_reasoning")
    write_jsonl(tmp_path / "o.jsonl", [s])
    assert "image" not in (tmp_path / "o.jsonl").read_text()
    assert load_samples(tmp_path / "o.jsonl") == [s]


# -- atomic io ---------------------------------------------------------------------------------------------------


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    f = tmp_path / "x.txt"
    atomic_write_text(f, "old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError):
        atomic_write_text(f, "new")
    assert f.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]  # no temp file left behind


def test_atomic_write_gives_the_permissions_a_plain_write_gives(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # open(..., "w") under the process umask
    atomic_write_text(tmp_path / "atomic.txt", "x")
    assert (tmp_path / "atomic.txt").stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


def test_atomic_replace_dir(tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "w").write_text("1")
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "w").write_text("2")
    atomic_replace_dir(tmp_path / "new", tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "w").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


# -- patch codebook ----------------------------------------------------------------------------------------------


def _blocky_images(n, seed=0):
    """Images made of 4x4 blocks in 5 colours: a codebook of >= 5 codes must reproduce them exactly."""
    rng = np.random.default_rng(seed)
    palette = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [250, 250, 250]], np.uint8)
    blocks = palette[rng.integers(0, 5, (n, 4, 4))]  # (n, 4, 4, 3)
    return blocks.repeat(4, axis=1).repeat(4, axis=2)


def test_codebook_exact_on_blocky_images_and_shapes(tmp_path):
    imgs = _blocky_images(20)
    cb = PatchCodebook.fit(imgs, num_codes=8, patch=4, seed=0)
    codes = cb.encode(imgs)
    assert codes.shape == (20, 16) and codes.dtype == np.int64 and cb.tokens_per_image == 16
    np.testing.assert_array_equal(cb.decode(codes), imgs)
    cb.save(tmp_path)
    cb2 = PatchCodebook.load(tmp_path)
    np.testing.assert_array_equal(cb2.encode(imgs), codes)
    with pytest.raises(BackendError, match=r"expects \(N, 16, 16, 3\)"):
        cb.encode(np.zeros((1, 8, 8, 3), np.uint8))
    with pytest.raises(BackendError, match=r"codes must lie in \[0, 8\)"):
        cb.decode(np.full((1, 16), 9))


def test_codebook_centre_order_is_a_permutation_of_raster_tokens(tmp_path):
    from seer.backends.image_tokenizer import patch_order

    imgs = _blocky_images(10)
    raster = PatchCodebook.fit(imgs, num_codes=8, patch=4, seed=0)
    centre = raster.with_order("centre")
    order = patch_order("centre", (4, 4))
    assert sorted(order) == list(range(16)) and order[0] == 2 * 4 + 2  # the centre cell first
    # ring 1 before ring 2: every cell at Chebyshev distance 1 from the centre comes before any farther one
    ring = [max(abs(k // 4 - 2), abs(k % 4 - 2)) for k in order]
    assert ring == sorted(ring)
    codes_r, codes_c = raster.encode(imgs), centre.encode(imgs)
    np.testing.assert_array_equal(codes_c, codes_r[:, order])
    np.testing.assert_array_equal(centre.decode(codes_c), imgs)  # the order changes tokens, never the image
    centre.save(tmp_path)
    loaded = PatchCodebook.load(tmp_path)
    assert loaded.order == "centre"
    np.testing.assert_array_equal(loaded.encode(imgs), codes_c)
    first = patch_order("centre_first", (4, 4))
    assert list(first) == [10, *range(10), *range(11, 16)]  # the centre cell, then raster order
    np.testing.assert_array_equal(raster.with_order("centre_first").encode(imgs), codes_r[:, first])
    with pytest.raises(BackendError, match="order 'spiral': expected one of raster, centre, centre_first"):
        raster.with_order("spiral")


def test_codebook_kmeans_reduces_error():
    rng = np.random.default_rng(1)
    imgs = np.clip(_blocky_images(30).astype(int) + rng.integers(-20, 20, (30, 16, 16, 3)), 0, 255).astype(np.uint8)
    rand_err = np.abs(PatchCodebook.random(16, (16, 16), 4).roundtrip(imgs).astype(int) - imgs).mean()
    fit_err = np.abs(PatchCodebook.fit(imgs, 16, 4, seed=0).roundtrip(imgs).astype(int) - imgs).mean()
    assert fit_err < rand_err / 3


def test_codebook_load_corrupted(tmp_path):
    (tmp_path / PatchCodebook.FILE).write_bytes(b"not an npz")
    with pytest.raises(BackendError, match="corrupted image tokenizer|image tokenizer"):
        PatchCodebook.load(tmp_path)
