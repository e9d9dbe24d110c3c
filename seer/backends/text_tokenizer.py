"""The word-level text tokenizer of the token UMM: text tokens and discrete image tokens in one vocabulary.

Layout of the ids (one contiguous range each, in this order)::

    special tokens   <pad> <unk> <bos> <eos> <sep> <gen> <boi> <eoi>
    format tags      <think> </think> <answer> </answer> <reprompt> </reprompt>   (seer.prompts.FORMAT_TAGS)
    words            case-sensitive: the verdicts are "A"/"B", and "a" is an article
    image tokens     <img_0> … <img_{K-1}>

Text is split on whitespace and punctuation; every ``<tag>`` above is an added special token, so it is matched whole
before the split. Decoding joins tokens with single spaces (the templates in ``seer.prompts`` are written that way),
and :func:`decode` keeps the format tags, which ``skip_special_tokens=True`` would drop.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from seer.backends.base import IMAGE_PLACEHOLDER, BackendError
from seer.prompts import FORMAT_TAGS

PAD, UNK, BOS, EOS, SEP, GEN, BOI, EOI = "<pad>", "<unk>", "<bos>", "<eos>", "<sep>", "<gen>", "<boi>", "<eoi>"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS, SEP, GEN, BOI, EOI)
IMAGE_TOKEN = "<img_{}>"

# the same split the tokenizer applies, used to collect a corpus' words
_PRE_TOKENIZER = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation("isolated")])


def image_token(code: int) -> str:
    return IMAGE_TOKEN.format(code)


def split_words(text: str) -> list[str]:
    """The pieces the tokenizer turns ``text`` into (tags such as ``<think>`` stay whole)."""
    reserved = set(SPECIAL_TOKENS) | set(FORMAT_TAGS) | {IMAGE_PLACEHOLDER}
    out: list[str] = []
    for chunk in text.split():
        if chunk in reserved:
            out.append(chunk)
            continue
        # a tag glued to a word ("<think>a") is still a tag: split around the reserved strings first
        pieces = [chunk]
        for tag in reserved:
            pieces = [p for piece in pieces for p in _split_keep(piece, tag)]
        for piece in pieces:
            if piece in reserved:
                out.append(piece)
            else:
                out.extend(w for w, _ in _PRE_TOKENIZER.pre_tokenize_str(piece))
    return out


def _split_keep(text: str, sep: str) -> list[str]:
    if sep not in text or text == sep:
        return [text]
    parts = text.split(sep)
    out: list[str] = []
    for i, p in enumerate(parts):
        if i:
            out.append(sep)
        if p:
            out.append(p)
    return out


def collect_words(texts: Iterable[str], min_count: int = 1) -> list[str]:
    """The vocabulary of a corpus: every word seen at least ``min_count`` times, most frequent first (ties in
    alphabetical order, so the result is deterministic). Tags and image placeholders are left out: they are
    added by :func:`build_word_tokenizer` itself."""
    reserved = set(SPECIAL_TOKENS) | set(FORMAT_TAGS) | {IMAGE_PLACEHOLDER}
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(w for w in split_words(text) if w not in reserved)
    return [w for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= min_count]


def build_word_tokenizer(words: Sequence[str], num_image_codes: int) -> PreTrainedTokenizerFast:
    """A WordLevel tokenizer over ``words`` plus ``num_image_codes`` image tokens (see the module docstring)."""
    if num_image_codes <= 0:
        raise BackendError(f"num_image_codes must be positive, got {num_image_codes}")
    reserved = list(SPECIAL_TOKENS) + list(FORMAT_TAGS)
    vocab: dict[str, int] = {t: i for i, t in enumerate(reserved)}
    for w in words:
        if not isinstance(w, str) or not w or w.split() != [w]:
            raise BackendError(f"vocabulary word {w!r} is not a single non-empty token without whitespace")
        if w.startswith("<img_") or w == IMAGE_PLACEHOLDER:
            raise BackendError(f"vocabulary word {w!r} collides with the image token names")
        vocab.setdefault(w, len(vocab))
    images = [image_token(k) for k in range(num_image_codes)]
    for t in images:
        vocab[t] = len(vocab)

    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.pre_tokenizer = _PRE_TOKENIZER
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in reserved + images])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, unk_token=UNK, bos_token=BOS, eos_token=EOS, sep_token=SEP
    )


def image_token_range(tokenizer: PreTrainedTokenizerFast) -> tuple[int, int]:
    """``(first id, number of codes)`` of the contiguous ``<img_k>`` block; raises if it is not contiguous."""
    vocab = tokenizer.get_vocab()
    if image_token(0) not in vocab:
        raise BackendError("tokenizer has no image tokens (<img_0> missing)")
    start = vocab[image_token(0)]
    k = 0
    while image_token(k) in vocab:
        if vocab[image_token(k)] != start + k:
            raise BackendError(f"image tokens are not contiguous: {image_token(k)} has id {vocab[image_token(k)]}, "
                               f"expected {start + k}")
        k += 1
    if start + k != len(vocab):
        raise BackendError(f"image tokens must close the vocabulary: they end at id {start + k}, vocab size "
                           f"{len(vocab)}")
    return start, k


def decode(tokenizer: PreTrainedTokenizerFast, ids: Sequence[int]) -> str:
    """Space-joined tokens without ``<pad> <bos> <eos>``; format tags and ``<unk>`` are kept."""
    drop = {tokenizer.convert_tokens_to_ids(t) for t in (PAD, BOS, EOS)}
    return " ".join(tokenizer.convert_ids_to_tokens([int(i) for i in ids if int(i) not in drop]))
