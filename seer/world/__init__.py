"""seer.world: a CPU testbed with a built-in cognitive gap (issue 3).

render → codebook → oracle (the world's annotator) → corpus → pretrain (the tiny base UMM) → build_data (Visual
Instruction Elaboration samples + quadruplets) → reprompters (external baselines) → show / report.

``load_base()`` opens the shipped base (``seer/world/assets/base``) or a directory written by ``seer world pretrain``
and returns ``(backend, oracle, semantics)``; a corrupted or mismatched base raises ``BackendError``.

The shipped base's measurements (``seer world report --data seer/world/assets/data``) are in
``assets/base/report.json``. State of this base (seed 0 of ``seer world pretrain``'s defaults: 3600 steps, 37 min on 2
cores, lr 7e-4, a subject/colour warm phase): it reads the subject (93% in captions, 91% asked) and colour (99–100%) off
an image, background, style and size too, but material (55–62%) and accessory (46–61%) poorly; its *generation* follows
subject (86%), style (99%) and size (89.5%) words but colour (49%) and material (33%) words only partly, so even a
correct concrete rewrite satisfies only 40% of the test instructions (Hard 26%). Warm phases of one corpus kind each
(``corpus.WARM_KINDS``) are the lever: the "read" phase taught reading; "read_detail" and "paint" (off by default)
taught material reading and colour/material generation in trial bases (``--paint-steps 300`` alone: material generated
60%, read 97%, subject kept; see ``pretrain``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from seer.backends.base import BackendError
from seer.io import read_json_object

ASSETS_BASE = Path(__file__).parent / "assets" / "base"


def base_dir(path: str | Path | None = None) -> Path:
    return Path(path) if path else ASSETS_BASE


def read_world_meta(path: str | Path | None = None) -> dict[str, Any]:
    from seer.world.pretrain import WORLD_FILE

    d = base_dir(path)
    return read_json_object(d / WORLD_FILE, BackendError,
                            f"missing; expected a world base written by `seer world pretrain --out {d}`")


def load_base(path: str | Path | None = None, **backend_options: Any):
    """``(backend, oracle, semantics)`` of a world base; every mismatch is a ``BackendError`` naming the file."""
    from seer.backends.token_umm import TokenUMMBackend
    from seer.world import semantics
    from seer.world.corpus import vocabulary_texts
    from seer.world.oracle import OracleJudge
    from seer.world.pretrain import UMM_DIR, WORLD_FILE, world_fingerprint

    d = base_dir(path)
    meta = read_world_meta(d)
    if meta.get("world_fingerprint") != world_fingerprint():
        raise BackendError(f"{d / WORLD_FILE}: this base was made for another version of the world (fingerprint "
                           f"{meta.get('world_fingerprint')!r}, this code is {world_fingerprint()!r}); rebuild it "
                           f"with `seer world pretrain`")
    backend = TokenUMMBackend.load(d / UMM_DIR, **backend_options)
    from seer.backends.text_tokenizer import collect_words

    vocab = backend.tokenizer.get_vocab()
    v2 = bool((meta.get("config") or {}).get("vision"))  # a v1 base never saw the judgement task's words
    missing = [w for w in collect_words(vocabulary_texts(judge=v2)) if w not in vocab]
    if missing:
        raise BackendError(f"{d / UMM_DIR / 'tokenizer.json'}: the tokenizer lacks world words {missing[:10]}; the "
                           f"base does not match this world")
    oracle = OracleJudge.load(d)
    return backend, oracle, semantics
