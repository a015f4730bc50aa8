"""The DeBERTa-v2/v3 tokenizer exactly as transformers 4 builds it, which PairRM was trained and is run with.

llm-blender (the PairRM code) runs under transformers < 5, where `AutoTokenizer` gives
`DebertaV2TokenizerFast`: from a folder's `tokenizer.json` as written, or converted from its `spm.model`
by `convert_slow_tokenizer.DebertaV2Converter`. transformers 5 rebuilds the DeBERTa-v2 pipeline from
its own class instead (normalizers in another order, only right stripping), which tokenizes leading
whitespace differently, so podium assembles the transformers 4 pipeline itself on the `tokenizers`
library:

- model: Unigram over the spm pieces and scores, `unk_id` from the trainer spec, no byte fallback;
  CONTROL and USER_DEFINED pieces are added tokens (CONTROL ones special), none normalized;
- normalizer: [Lowercase if do_lower_case], Strip (both sides), Precompiled(the spm charsmap) when the
  model has one, Replace(" {2,}", " ");
- pre-tokenizer: [Punctuation(isolated) if split_by_punct], Metaspace("▁", prepend_scheme="always");
- post-processor: "[CLS] $A [SEP]" (pair: "[CLS] $A [SEP] $B [SEP]");
- then the special tokens the tokenizer class declares ([CLS], [SEP], [UNK], [PAD], [MASK]) are added as
  special tokens in that class's order (bos, eos, unk, sep, pad, cls, mask), so [MASK] gets the first id
  after the pieces, as deberta-v3's 128000; all are matched on the raw text except [UNK], which the slow
  DebertaV2Tokenizer (the conversion goes through it) declares normalized.

Extra tokens (PairRM's markers) are added afterwards as `tokenizer.add_tokens` adds a string: not
special, normalized.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import Unigram

from podium.errors import PodiumError, first_line
from podium.models.spm_proto import CONTROL, UNIGRAM, USER_DEFINED, read_spm_model

SPM_FILE, TOKENIZER_FILE, TOKENIZER_CONFIG = "spm.model", "tokenizer.json", "tokenizer_config.json"
# DebertaV2TokenizerFast's defaults, in PreTrainedTokenizerBase.SPECIAL_TOKENS_ATTRIBUTES order.
SPECIAL_DEFAULTS = {"bos_token": "[CLS]", "eos_token": "[SEP]", "unk_token": "[UNK]", "sep_token": "[SEP]",
                    "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"}


def _token_text(value) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or an AddedToken dict."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def tokenizer_settings(folder: Path) -> dict:
    """do_lower_case, split_by_punct and the special tokens of a DeBERTa-v2 tokenizer folder."""
    settings = {"do_lower_case": False, "split_by_punct": False, **SPECIAL_DEFAULTS}
    for name in (TOKENIZER_CONFIG, "special_tokens_map.json"):
        path = folder / name
        if not path.is_file():
            continue
        try:
            fields = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise PodiumError(f"{path}: invalid JSON ({first_line(e)})") from None
        if not isinstance(fields, dict):
            raise PodiumError(f"{path}: expected a JSON object")
        for key in ("do_lower_case", "split_by_punct"):
            if key in fields:
                settings[key] = bool(fields[key])
        for key in SPECIAL_DEFAULTS:
            if _token_text(fields.get(key)):
                settings[key] = _token_text(fields[key])
    return settings


def tokenizer_from_spm(path: str | os.PathLike, *, do_lower_case: bool = False, split_by_punct: bool = False) -> Tokenizer:
    """transformers 4's DebertaV2Converter applied to the SentencePiece model at `path` (no special tokens yet)."""
    spm = read_spm_model(path)
    if spm.model_type != UNIGRAM:
        raise PodiumError(f"{path}: a SentencePiece model of type {spm.model_type}; DeBERTa-v2 tokenizers are Unigram (1)")
    tok = Tokenizer(Unigram([(piece, score) for piece, score, _ in spm.pieces], unk_id=spm.unk_id, byte_fallback=False))
    # SpmConverter.tokenizer: control pieces are special added tokens, user-defined ones plain added tokens.
    tok.add_tokens([AddedToken(piece, normalized=False, special=kind == CONTROL)
                    for piece, _, kind in spm.pieces if kind in (CONTROL, USER_DEFINED)])
    steps = [normalizers.Lowercase()] if do_lower_case else []
    steps.append(normalizers.Strip())
    if spm.precompiled_charsmap:
        steps.append(normalizers.Precompiled(spm.precompiled_charsmap))
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))
    tok.normalizer = normalizers.Sequence(steps)
    pre = [pre_tokenizers.Punctuation(behavior="isolated")] if split_by_punct else []
    pre.append(pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(pre)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    return tok


def load_deberta_tokenizer(folder: str | os.PathLike) -> tuple[Tokenizer, dict]:
    """The folder's DeBERTa-v2 tokenizer as transformers 4's `AutoTokenizer` builds it, and its settings.

    `tokenizer.json` is used as written (transformers 4 does); otherwise `spm.model` is converted.
    """
    folder = Path(folder)
    settings = tokenizer_settings(folder)
    from_file = (folder / TOKENIZER_FILE).is_file()
    if from_file:
        try:
            tok = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        except Exception as e:  # noqa: BLE001 - the tokenizers library raises plain Exceptions on bad files
            raise PodiumError(f"{folder / TOKENIZER_FILE}: not a tokenizers file ({first_line(e)})") from None
    elif (folder / SPM_FILE).is_file():
        tok = tokenizer_from_spm(folder / SPM_FILE, do_lower_case=settings["do_lower_case"],
                                 split_by_punct=settings["split_by_punct"])
        cls_, sep = settings["cls_token"], settings["sep_token"]
        ids = {t: tok.token_to_id(t) for t in (cls_, sep)}
        missing = [t for t, i in ids.items() if i is None]
        if missing:
            raise PodiumError(f"{folder / SPM_FILE}: no piece {missing[0]!r}; DeBERTa-v2's spm model holds [CLS] and [SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single=f"{cls_}:0 $A:0 {sep}:0", pair=f"{cls_}:0 $A:0 {sep}:0 $B:1 {sep}:1",
            special_tokens=[(cls_, ids[cls_]), (sep, ids[sep])])
    else:
        raise PodiumError(f"{folder}: no DeBERTa-v2 tokenizer: neither {TOKENIZER_FILE} nor {SPM_FILE}")
    # PreTrainedTokenizerFast adds the declared special tokens that are not added tokens yet, in this order;
    # the slow DebertaV2Tokenizer (which the spm conversion goes through) declares its unk token normalized.
    added = {t.content for t in tok.get_added_tokens_decoder().values()}
    for key in SPECIAL_DEFAULTS:
        text = settings[key]
        if text not in added:
            normalized = key == "unk_token" and not from_file
            tok.add_special_tokens([AddedToken(text, special=True, normalized=normalized)])
            added.add(text)
    return tok, settings
