"""PairRM (Jiang et al. 2023, "LLM-Blender", arXiv:2306.02561) on transformers' `DebertaV2Model`, read from
either published layout, without llm-blender.

The network is llm-blender's `CrossCompareReranker` (pair_ranker/ranker.py) and its transformers port
`DebertaV2PairRM` (pair_ranker/pairrm.py): a DeBERTa-v2 encoder reads one pair sequence

    [CLS] <|source|> x [SEP] [CLS] <|candidate1|> y_i [SEP] [CLS] <|candidate2|> y_j [SEP]

and the head `head_layer` = Dropout, Linear(2H, H), Tanh, Dropout, Linear(H, n_tasks) scores the
concatenated last-layer states of the source marker and each candidate marker; the pair's logit is
C_ij = mean over tasks of head([h_src; h_cand1]) - head([h_src; h_cand2]).

Layouts (both safetensors with the keys `pretrained_model.*` and `head_layer.{1,4}.*`):

- `llm-blender/PairRM`: `config.json` (or `ranker_config.json`) is llm-blender's `RankerConfig` with
  `ranker_type: pairranker`, `model_type: deberta`, `model_name` (the backbone whose config and tokenizer
  it was trained on, microsoft/deberta-v3-large), `source_maxlength` 1224, `candidate_maxlength` 412,
  `n_tasks`, `fp16`. As llm-blender's `load_ranker`, the tokenizer comes from `model_name` with the four
  markers added; the backbone's *weights* there are never read (every tensor is in the checkpoint).
- `llm-blender/PairRM-hf`: `config.json` is the backbone's `DebertaV2Config` plus `n_tasks`,
  `source_prefix_id`, `cand1_prefix_id`, `cand2_prefix_id`, `cand_prefix_id`, and the folder holds the
  tokenizer (markers included). The lengths are the model card's `tokenize_pair` defaults, 1224 and 412.

Weights are built in float32 whatever dtype a config names (transformers 5 would otherwise take the
backbone config's dtype), then run as llm-blender runs them: fp16 on CUDA when the ranker config says
`fp16` (its default, and the HF layout's), float32 on CPU. No code from a model folder is executed.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from huggingface_hub import snapshot_download
from safetensors import SafetensorError, safe_open
from tokenizers import Tokenizer
from torch import nn
from transformers import DebertaV2Config, DebertaV2Model
from transformers.models.deberta_v2.modeling_deberta_v2 import build_relative_position

from podium.errors import PodiumError, first_line
from podium.models.deberta_tokenizer import SPM_FILE, TOKENIZER_FILE, load_deberta_tokenizer
from podium.models.folder_checks import PICKLE_SUFFIXES

log = logging.getLogger("podium")

MARKERS = {"source": "<|source|>", "cand1": "<|candidate1|>", "cand2": "<|candidate2|>", "cand": "<|candidate|>"}
HF_PREFIX_FIELDS = {"source": "source_prefix_id", "cand1": "cand1_prefix_id", "cand2": "cand2_prefix_id",
                    "cand": "cand_prefix_id"}
EMBEDDINGS = "pretrained_model.embeddings.word_embeddings.weight"
# The files of a backbone that PairRM needs: its config and tokenizer, never its weights.
BACKBONE_FILES = ["config.json", SPM_FILE, TOKENIZER_FILE, "tokenizer_config.json", "special_tokens_map.json",
                  "added_tokens.json"]
PAIRRM_FILES = ["*.json", "*.safetensors", SPM_FILE]
DEFAULT_SOURCE_MAX, DEFAULT_CANDIDATE_MAX = 1224, 412  # PairRM's RankerConfig; the HF card's tokenize_pair


@dataclass(frozen=True)
class PairRMSettings:
    """How llm-blender feeds and runs a PairRM checkpoint."""

    source_max_length: int = DEFAULT_SOURCE_MAX
    candidate_max_length: int = DEFAULT_CANDIDATE_MAX
    fp16: bool = True
    layout: str = "llm-blender"


class PairRMModel(nn.Module):
    """The DeBERTa-v2 pair encoder and its head; attribute names are the checkpoints' keys."""

    def __init__(self, config: DebertaV2Config, n_tasks: int = 1, dropout: float = 0.05):
        super().__init__()
        self.pretrained_model = DebertaV2Model(config)
        h = config.hidden_size
        self.head_layer = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * h, h), nn.Tanh(), nn.Dropout(dropout),
                                        nn.Linear(h, n_tasks))

        self._relative_positions: torch.Tensor | None = None

    def relative_positions(self, length: int, device: torch.device) -> torch.Tensor:
        """DeBERTa's bucketed relative positions [1, T, T] for T = `length`: the top-left block of one matrix built
        once for the longest length seen (rel[i, j] depends on i - j only), instead of T^2 logarithms per forward."""
        cached = self._relative_positions
        if cached is None or cached.shape[-1] < length or cached.device != device:
            encoder = self.pretrained_model.encoder
            # Grown by doubling: pair sequences arrive sorted by length.
            size = max(length, 512 if cached is None else 2 * cached.shape[-1])
            span = torch.empty(1, size, 1, device=device)
            cached = build_relative_position(span, span, bucket_size=encoder.position_buckets,
                                             max_position=encoder.max_relative_positions)
            self._relative_positions = cached
        return cached[:, :length, :length]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, markers: torch.Tensor) -> torch.Tensor:
        """Pair logits C [B] from pair sequences `input_ids` [B, T] (right-padded, `attention_mask` [B, T]) and
        the positions of their source, candidate-1 and candidate-2 markers `markers` [B, 3].

        The encoder runs as `DebertaV2Model.forward` runs it (embeddings, then the encoder on the same mask), given
        the cached relative positions."""
        deberta = self.pretrained_model
        if deberta.z_steps > 1 or not deberta.encoder.relative_attention:
            hidden = deberta(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        else:
            embedded = deberta.embeddings(input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids),
                                          mask=attention_mask)
            hidden = deberta.encoder(embedded, attention_mask, output_hidden_states=False, return_dict=True,
                                     relative_pos=self.relative_positions(input_ids.shape[1], input_ids.device),
                                     ).last_hidden_state
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        src, c1, c2 = (hidden[rows, markers[:, m]] for m in range(3))
        left = self.head_layer(torch.cat([src, c1], dim=-1))
        right = self.head_layer(torch.cat([src, c2], dim=-1))
        return (left - right).mean(dim=-1)


@dataclass
class LoadedPairRM:
    model: PairRMModel
    tokenizer: Tokenizer
    marker_ids: dict[str, int]  # source, cand1, cand2, cand -> token id
    special_ids: dict[str, int]  # cls, sep, pad -> token id
    sep_token: str
    settings: PairRMSettings
    device: torch.device
    dtype: torch.dtype


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise PodiumError(f"{path}: invalid JSON ({first_line(e)})") from None
    if not isinstance(value, dict):
        raise PodiumError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def resolve_folder(ref: str | os.PathLike, patterns: list[str], what: str) -> Path:
    """A local folder as it is; a Hub id fetched (only `patterns`: configs, tokenizer, safetensors) into the Hub cache."""
    path = Path(ref)
    if path.exists():
        if not path.is_dir():
            raise PodiumError(f"{what} {str(ref)!r}: not a folder")
        return path
    try:
        return Path(snapshot_download(str(ref), allow_patterns=patterns))
    except Exception as e:  # noqa: BLE001 - any Hub failure (offline, unknown repo, gated) is the user's input
        raise PodiumError(f"{what} {str(ref)!r}: not a local folder, and the Hub did not give it ({first_line(e)})") from None


def ranker_config(folder: Path) -> dict | None:
    """llm-blender's ranker config of an `llm-blender/PairRM`-layout folder, or None for another layout."""
    for name in ("config.json", "ranker_config.json"):
        path = folder / name
        if path.is_file():
            fields = _read_json(path)
            if "ranker_type" in fields:
                return fields | {"_path": str(path)}
    return None


def _positive_int(fields: dict, key: str, default: int, where: str) -> int:
    value = fields.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 8:
        raise PodiumError(f"{where}: field {key!r} must be an integer >= 8, got {value!r}")
    return value


def _backbone_config(fields: dict, where: str) -> DebertaV2Config:
    if fields.get("model_type") not in ("deberta-v2", None):
        raise PodiumError(f"{where}: model_type {fields.get('model_type')!r}; PairRM's backbone is DeBERTa-v2 ('deberta-v2')")
    fields = {k: v for k, v in fields.items() if k not in ("architectures", "auto_map", "torch_dtype", "dtype")}
    try:
        return DebertaV2Config(**fields)
    except (TypeError, ValueError) as e:
        raise PodiumError(f"{where}: not a DeBERTa-v2 config ({first_line(e)})") from None


def check_weights(folder: Path) -> list[Path]:
    """The folder's *.safetensors files; a folder with only pickles is refused (llm-blender would unpickle them)."""
    files = sorted(folder.glob("*.safetensors"))
    if files:
        return files
    pickled = [p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES]
    raise PodiumError(f"{folder}: no model.safetensors" + (f" (only {pickled[0]}, a pickle, which podium does not load; "
                      "convert it to safetensors)" if pickled else ""))


def read_state_dict(files: list[Path]) -> dict[str, torch.Tensor]:
    state = {}
    for f in files:
        try:
            with safe_open(str(f), framework="pt") as st:
                for key in st.keys():
                    state[key] = st.get_tensor(key)
        except (SafetensorError, OSError) as e:
            raise PodiumError(f"{f}: unreadable safetensors ({first_line(e)})") from None
    return state


def _marker_ids(tokenizer: Tokenizer) -> dict[str, int]:
    """Add the markers as llm-blender's collator does (`tokenizer.add_tokens`, in this order) and return their ids."""
    tokenizer.add_tokens(list(MARKERS.values()))
    return {name: tokenizer.token_to_id(text) for name, text in MARKERS.items()}


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_pairrm(ref: str | os.PathLike, *, device: str | torch.device | None = None) -> LoadedPairRM:
    """A PairRM checkpoint (folder or Hub id) in either published layout, ready to score pair sequences."""
    folder = resolve_folder(ref, PAIRRM_FILES, "PairRM checkpoint")
    files = check_weights(folder)
    ranker = ranker_config(folder)
    if ranker is not None:
        where = ranker.pop("_path")
        if ranker.get("ranker_type") != "pairranker":
            raise PodiumError(f"{where}: ranker_type {ranker.get('ranker_type')!r}; podium reads PairRM, a 'pairranker'")
        if not str(ranker.get("model_type") or "").startswith("deberta"):
            raise PodiumError(f"{where}: model_type {ranker.get('model_type')!r}; PairRM's backbone is DeBERTa "
                              "('deberta')")
        name = ranker.get("model_name")
        if not isinstance(name, str) or not name:
            raise PodiumError(f"{where}: missing field 'model_name' (the backbone, e.g. microsoft/deberta-v3-large)")
        backbone_dir = resolve_folder(name, BACKBONE_FILES, f"{where}: model_name")
        if not (backbone_dir / "config.json").is_file():
            raise PodiumError(f"{where}: model_name {name!r} has no config.json")
        config = _backbone_config(_read_json(backbone_dir / "config.json"), str(backbone_dir / "config.json"))
        tokenizer, tok_settings = load_deberta_tokenizer(backbone_dir)
        settings = PairRMSettings(_positive_int(ranker, "source_maxlength", DEFAULT_SOURCE_MAX, where),
                                  _positive_int(ranker, "candidate_maxlength", DEFAULT_CANDIDATE_MAX, where),
                                  bool(ranker.get("fp16", True)), "llm-blender")
        n_tasks, dropout = ranker.get("n_tasks", 1), ranker.get("drop_out", 0.05)
        marker_ids = _marker_ids(tokenizer)
    else:
        where = str(folder / "config.json")
        if not (folder / "config.json").is_file():
            raise PodiumError(f"{folder}: not a PairRM checkpoint: no config.json (llm-blender's ranker config with "
                              "ranker_type and model_name, or PairRM-hf's DeBERTa-v2 config with source_prefix_id)")
        fields = _read_json(folder / "config.json")
        missing = [f for f in HF_PREFIX_FIELDS.values() if not isinstance(fields.get(f), int)]
        if missing:
            raise PodiumError(f"{where}: not a PairRM config: no field 'ranker_type' (llm-blender/PairRM's layout) "
                              f"and no integer {missing[0]!r} (llm-blender/PairRM-hf's)")
        config = _backbone_config({k: v for k, v in fields.items() if k not in HF_PREFIX_FIELDS.values()}, where)
        tokenizer, tok_settings = load_deberta_tokenizer(folder)
        settings = PairRMSettings(layout="hf")
        n_tasks, dropout = fields.get("n_tasks", 1), fields.get("drop_out", 0.05)
        marker_ids = _marker_ids(tokenizer)
        declared = {name: fields[f] for name, f in HF_PREFIX_FIELDS.items()}
        if declared != marker_ids:
            raise PodiumError(f"{where}: the prefix ids {declared} are not the tokenizer's marker ids {marker_ids}")
    if not isinstance(n_tasks, int) or isinstance(n_tasks, bool) or n_tasks < 1:
        raise PodiumError(f"{where}: field 'n_tasks' must be a positive integer, got {n_tasks!r}")

    state = read_state_dict(files)
    if EMBEDDINGS not in state:
        raise PodiumError(f"{folder}: no tensor {EMBEDDINGS!r}; not a PairRM checkpoint (keys pretrained_model.*, "
                          "head_layer.*)")
    # llm-blender resizes the backbone's embeddings to the tokenizer (markers included) before loading.
    config.vocab_size = state[EMBEDDINGS].shape[0]
    special = {"cls": tok_settings["cls_token"], "sep": tok_settings["sep_token"], "pad": tok_settings["pad_token"]}
    special_ids = {k: tokenizer.token_to_id(v) for k, v in special.items()}
    too_big = {k: i for k, i in (marker_ids | special_ids).items() if i is None or i >= config.vocab_size}
    if too_big:
        raise PodiumError(f"{folder}: token ids {too_big} are not rows of the checkpoint's {config.vocab_size}-row "
                          "embedding; the tokenizer is not the one this PairRM was trained with")
    model = PairRMModel(config, n_tasks=n_tasks, dropout=float(dropout))
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    if missing:
        raise PodiumError(f"{folder}: the checkpoint lacks {len(missing)} tensors of PairRM "
                          f"({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''})")
    wrong = [k for k in expected if tuple(state[k].shape) != tuple(expected[k].shape)]
    if wrong:
        k = wrong[0]
        raise PodiumError(f"{folder}: tensor {k!r} has shape {list(state[k].shape)}, the config makes it "
                          f"{list(expected[k].shape)}")
    extra = sorted(set(state) - set(expected))
    if extra:
        log.info(f"PairRM {folder}: {len(extra)} tensors not part of the model are ignored ({', '.join(extra[:3])})")
    model.load_state_dict({k: state[k].float() for k in expected})
    device = torch.device(device) if device is not None else default_device()
    dtype = torch.float16 if device.type in ("cuda", "mps") and settings.fp16 else torch.float32
    model.to(device=device, dtype=dtype).eval()
    log.info(f"PairRM {folder} ({settings.layout} layout): DeBERTa-v2 {config.hidden_size} x {config.num_hidden_layers} "
             f"layers, source/candidate cuts {settings.source_max_length}/{settings.candidate_max_length} tokens, "
             f"{str(dtype).removeprefix('torch.')} on {device}")
    return LoadedPairRM(model, tokenizer, marker_ids, special_ids, special["sep"], settings, device, dtype)
