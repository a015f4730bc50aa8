"""Tiny random-init PairRM checkpoints in the published layouts, built offline (a test helper).

What is written follows the real files, independently of podium's loader:

- the backbone folder is shaped like microsoft/deberta-v3-large: `config.json` (model_type deberta-v2,
  relative attention with log buckets, p2c/c2p, shared keys, no absolute positions, no token types),
  safetensors weights, `spm.model` (a SentencePiece Unigram model trained here with deberta-v3's
  layout: [PAD] 0, [CLS] 1, [SEP] 2, [UNK] 3, byte fallback on, nmt_nfkc normalization) and
  `tokenizer_config.json` {"do_lower_case": false, "vocab_type": "spm"}. Its config names float16
  (`dtype`), which a loader must not follow;
- `llm-blender/PairRM`'s layout: llm-blender's ranker config as `config.json` and `ranker_config.json`
  (ranker_type pairranker, model_type deberta, model_name the backbone folder, 1224/412, fp16 true) and
  `model.safetensors` holding `CrossCompareReranker`'s state: `pretrained_model.*` (embeddings resized to
  the tokenizer with its four markers, as `build_ranker` does) and `head_layer.{1,4}.*`;
- `llm-blender/PairRM-hf`'s layout: `DebertaV2PairRM`'s config (the backbone's plus n_tasks, drop_out and
  the four prefix ids), the same tensors, and the tokenizer files in the folder (here `spm.model`; the
  oracle writes the notebook's own `save_pretrained` version, tokenizer.json included).

The PairRM weights differ from the backbone folder's (another seed), so a loader that read the backbone's
weights would score differently.
"""

from __future__ import annotations

import io
import json
import random
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn
from transformers import DebertaV2Config, DebertaV2Model

MARKERS = ["<|source|>", "<|candidate1|>", "<|candidate2|>", "<|candidate|>"]
SPM_SPECIALS = {"pad_id": 0, "pad_piece": "[PAD]", "bos_id": 1, "bos_piece": "[CLS]", "eos_id": 2, "eos_piece": "[SEP]",
                "unk_id": 3, "unk_piece": "[UNK]"}
WORDS = ("the of and to in is you that it he was for on are as with his they at be this have from or one had by word but "
         "not what all were we when your can said there use an each which she do how their if will up other about out "
         "many then them these so some her would make like him into time has look two more write go see number no way "
         "could people my than first water been call who oil its now find long down day did get come made may part "
         "answer question good bad better best worst because none null true false yes").split()
BACKBONE = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
            "max_position_embeddings": 64, "position_buckets": 16, "relative_attention": True,
            "pos_att_type": ["p2c", "c2p"], "norm_rel_ebd": "layer_norm", "share_att_key": True,
            "position_biased_input": False, "type_vocab_size": 0, "layer_norm_eps": 1e-7, "max_relative_positions": -1,
            "hidden_act": "gelu"}


def corpus(n: int = 600, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 14))) + rng.choice([".", "?", "!", ",", ":", ""])
             + " " + str(rng.randint(0, 9999)) for _ in range(n)]
    return lines + ["Hello! How are you? I'm fine, thanks.", "café naïve — «quotes» ‘single’ 1+1=2 (x) [y] {z} <a/>",
                    "tabs\tand\nnewlines and    spaces", "ÉCOUTE ﬁ ＦＵＬＬ 中文 😀"]


def train_spm(path: Path, vocab_size: int = 400) -> int:
    """A deberta-v3-like SentencePiece model at `path`; returns its piece count."""
    import sentencepiece as spm  # dev dependency: only the fixture trains a model

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus()), model_writer=model, vocab_size=vocab_size,
                                   model_type="unigram", byte_fallback=True, character_coverage=1.0, num_threads=1,
                                   minloglevel=2, **SPM_SPECIALS)
    path.write_bytes(model.getvalue())
    return spm.SentencePieceProcessor(model_proto=model.getvalue()).get_piece_size()


def tokenizer_size(pieces: int) -> int:
    """len(tokenizer) in llm-blender after `add_tokens(markers)`: the pieces, [MASK], the four markers."""
    return pieces + 1 + len(MARKERS)


def write_backbone(folder: Path, seed: int = 1, **sizes) -> dict:
    """The tiny deberta-v3-shaped backbone folder (`sizes` override BACKBONE: hidden_size, num_hidden_layers, ...);
    returns its config dict (with the piece count)."""
    folder.mkdir(parents=True, exist_ok=True)
    pieces = train_spm(folder / "spm.model")
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False, "vocab_type": "spm"}))
    config = DebertaV2Config(vocab_size=pieces + 16, **{**BACKBONE, **sizes})  # padded past the tokenizer, as 128100
    torch.manual_seed(seed)
    model = DebertaV2Model(config)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"),
              metadata={"format": "pt"})
    # As microsoft/deberta-v3-large's config.json writes them: pos_att_type as "p2c|c2p"; here also a float16 dtype.
    fields = {**config.to_diff_dict(), "model_type": "deberta-v2", "architectures": ["DebertaV2Model"], "dtype": "float16",
              "pos_att_type": "p2c|c2p"}
    fields.pop("transformers_version", None)
    (folder / "config.json").write_text(json.dumps(fields, indent=2))
    return {**fields, "pieces": pieces}


def pairrm_state(backbone: dict, seed: int = 2, head_std: float = 0.5) -> dict[str, torch.Tensor]:
    """CrossCompareReranker's state: the backbone resized to the tokenizer, head_layer = [Dropout, Linear(2H, H), Tanh,
    Dropout, Linear(H, 1)] (the head drawn wider than its init, so that logits are O(1))."""
    fields = {k: v for k, v in backbone.items() if k not in ("pieces", "architectures", "dtype", "model_type")}
    fields["pos_att_type"] = BACKBONE["pos_att_type"]
    # Drawn wider than deberta's 0.02 init (0.3 at hidden size 32, scaled by 1/sqrt(hidden size)), so that a
    # candidate's content reaches its marker's state.
    std = 0.3 * (32 / backbone["hidden_size"]) ** 0.5
    config = DebertaV2Config(**{**fields, "vocab_size": tokenizer_size(backbone["pieces"]), "initializer_range": std})
    torch.manual_seed(seed)
    encoder = DebertaV2Model(config)
    h = config.hidden_size
    head = nn.Sequential(nn.Dropout(0.05), nn.Linear(2 * h, h), nn.Tanh(), nn.Dropout(0.05), nn.Linear(h, 1))
    with torch.no_grad():
        for p in head.parameters():
            p.normal_(0, head_std)
    state = {f"pretrained_model.{k}": v for k, v in encoder.state_dict().items()}
    state.update({f"head_layer.{k}": v for k, v in head.state_dict().items()})
    return {k: v.contiguous() for k, v in state.items()}


def ranker_config(model_name: str, **overrides) -> dict:
    """llm-blender's RankerConfig as the PairRM repository's config.json holds it."""
    return {"ranker_type": "pairranker", "model_type": "deberta", "model_name": model_name, "cache_dir": None,
            "load_checkpoint": None, "source_maxlength": 1224, "candidate_maxlength": 412, "n_tasks": 1, "num_pos": 5,
            "num_neg": 5, "sub_sampling_mode": "all_pair", "sub_sampling_ratio": 0.4, "loss_type": "instructgpt",
            "reduce_type": "linear", "inference_mode": "bubble", "drop_out": 0.05, "fp16": True, "device": None,
            **overrides}


def write_llm_blender_layout(folder: Path, backbone_dir: Path, backbone: dict, seed: int = 2, **overrides) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_file(pairrm_state(backbone, seed), str(folder / "model.safetensors"), metadata={"format": "pt"})
    text = json.dumps(ranker_config(str(backbone_dir.resolve()), **overrides), indent=2)
    (folder / "config.json").write_text(text)
    (folder / "ranker_config.json").write_text(text)
    return folder


def write_hf_layout(folder: Path, backbone_dir: Path, backbone: dict, seed: int = 2) -> Path:
    """PairRM-hf's layout with the tokenizer as `spm.model` (markers get ids pieces + 1 .. pieces + 4)."""
    folder.mkdir(parents=True, exist_ok=True)
    save_file(pairrm_state(backbone, seed), str(folder / "model.safetensors"), metadata={"format": "pt"})
    for name in ("spm.model", "tokenizer_config.json"):
        shutil.copy(backbone_dir / name, folder / name)
    first = backbone["pieces"] + 1  # after [MASK]
    fields = {k: v for k, v in backbone.items() if k not in ("pieces", "dtype")}
    fields.update(pos_att_type=BACKBONE["pos_att_type"], vocab_size=tokenizer_size(backbone["pieces"]),
                  architectures=["DebertaV2PairRM"], n_tasks=1, drop_out=0.05, source_prefix_id=first,
                  cand1_prefix_id=first + 1, cand2_prefix_id=first + 2, cand_prefix_id=first + 3, sep_token_id=2)
    (folder / "config.json").write_text(json.dumps(fields, indent=2))
    return folder


def build_tiny_pairrm(root: Path, variants: dict[str, dict] | None = None, **sizes) -> dict[str, Path]:
    """{"backbone", "llm-blender", "hf"}: the backbone folder and the same PairRM weights in both layouts; each of
    `variants` (name -> ranker config overrides) is one more llm-blender-layout folder of the same weights. `sizes`
    override the backbone's (BACKBONE)."""
    backbone = write_backbone(root / "deberta-v3-tiny", **sizes)
    dirs = {"backbone": root / "deberta-v3-tiny",
            "llm-blender": write_llm_blender_layout(root / "PairRM", root / "deberta-v3-tiny", backbone),
            "hf": write_hf_layout(root / "PairRM-hf", root / "deberta-v3-tiny", backbone)}
    for name, overrides in (variants or {}).items():
        dirs[name] = write_llm_blender_layout(root / f"PairRM-{name}", root / "deberta-v3-tiny", backbone, **overrides)
    return dirs
