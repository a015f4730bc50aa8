"""Preference models on a causal-LM backbone: a Bradley–Terry reward head and the GPM embedding head.

Both pool the last-layer hidden states of `prompt + response` into one vector h and expose
`pair_logits(batch) -> [B]`, the logit of P(chosen ≻ rejected), so one loss,
−log σ(pair_logits), trains either model and one evaluator scores either.

Pooling (`pooling`): "mean" (the default) averages the states of the response tokens; "last" takes
the state of the last non-pad token, as the GPM and OpenRLHF code and TRL's reward models do, and is
what a folder saved without the field gets. Why the default departs from them: the last state is a
next-token predictor, and after a response the next token is always the end of turn, so in a backbone
fine-tuned on short responses it is nearly the same vector for every sequence (cosine 0.99). Around
such a point the GPM score is, to first order, a Bradley–Terry score f(i) − f(j), whose gradient sums
to zero around a preference cycle; the intransitive part is second order in the spread of the
embeddings, and training pulls them together onto the log 2 saddle (measured in
benchmarks/results/effects_notes.md §4: held-out accuracy 0.49 at any lr, 1.00 with mean pooling).
Large pretrained backbones keep more in the last state; "last" stays available for them.

- `RewardModel`: r(x, y) = w·h + b; P(y_w ≻ y_l) = σ(r_w − r_l) (Bradley & Terry 1952;
  Ouyang et al. 2022).
- `GPMModel`: v(x, y) = normalize(W h) ∈ R^{2k}; s(i ≻ j) = ⟨R v_i, v_j⟩ with
  R = blockdiag(λ_1 J, …, λ_k J), J = [[0, −1], [1, 0]]; P(i ≻ j) = σ(s / τ), τ = 0.1
  (Zhang et al. 2024, "Beyond Bradley-Terry Models: A General Preference Model", arXiv:2410.02197).
  λ is either fixed at 1 or a prompt-dependent gate λ(x) read from the hidden state of the last
  prompt token of the same forward pass (causal attention makes it a function of the prompt only),
  so a gate costs no extra pass.

Saved as a folder: the backbone with `save_pretrained` (safetensors) and its tokenizer, the head
in `head.safetensors` and the head config in `preference_model.json`. Loading is safetensors-only
and never runs remote code (same rules as `podium.models.io`).

The GPM score math lives in `podium.losses.gpm`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel

from podium.errors import PodiumError, first_line
from podium.losses.gpm import gpm_score
from podium.models import io
from podium.models.attention_choice import choose_attn_implementation
from podium.models.folder_checks import check_weights_format

CONFIG_NAME = "preference_model.json"
HEAD_NAME = "head.safetensors"
GATES = (None, "softmax", "softplus")
POOLINGS = ("mean", "last")


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last non-pad token per row, for left or right padding. [B, T] -> [B]."""
    positions = torch.arange(attention_mask.shape[-1], device=attention_mask.device)
    return (attention_mask.long() * positions).argmax(-1)


def mean_rows(hidden: torch.Tensor, attention_mask: torch.Tensor, start: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of hidden[b, t] over non-pad t >= start[b] (right padding). [B, T, H], [B, T], [B] -> [B, H]."""
    keep = attention_mask.bool()
    if start is not None:
        positions = torch.arange(attention_mask.shape[-1], device=attention_mask.device)
        keep = keep & (positions[None, :] >= start[:, None])
    w = keep.to(hidden.dtype)
    return (hidden * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp(min=1.0)


def gather_rows(hidden: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """hidden[b, index[b]]. [B, T, H], [B] -> [B, H]."""
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), index]


def base_backbone(model: nn.Module) -> nn.Module:
    """The transformer body of a causal LM (drops the LM head); a base model is returned as is."""
    return getattr(model, "base_model", model)


class _PreferenceModel(nn.Module):
    kind = ""

    def __init__(self, backbone: nn.Module, pooling: str = "mean"):
        super().__init__()
        if pooling not in POOLINGS:
            raise PodiumError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.backbone = base_backbone(backbone)
        self.hidden_size = self.backbone.config.hidden_size
        self.pooling = pooling

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor,
             prompt_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """One vector per sequence: mean over response tokens, or the last token. [B, T, H] -> [B, H].

        Mean pooling needs `prompt_lengths` [B] (prompt tokens per row, right padding), as the pair
        collate and the judges give them.
        """
        if self.pooling == "last":
            return gather_rows(hidden, last_token_index(attention_mask))
        if prompt_lengths is None:
            raise ValueError("mean pooling needs prompt_lengths (the number of prompt tokens per row)")
        return mean_rows(hidden, attention_mask, prompt_lengths)

    @property
    def max_length(self) -> int | None:
        return getattr(self.backbone.config, "max_position_embeddings", None)

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Last-layer hidden states. [B, T] -> [B, T, H]."""
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask)
        return out.last_hidden_state

    def head_config(self) -> dict:
        return {"pooling": self.pooling}

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs) -> None:
        """Backbone via its `save_pretrained` (kwargs passed on), head weights and head config.

        Having this name lets `podium.models.io.save_model` (and so the shared training loop)
        save a preference model exactly like a causal LM.
        """
        out = Path(save_directory)
        kwargs.setdefault("safe_serialization", True)
        # `state_dict`: a sharded run's gathered weights (training loop under FSDP), this module's keys.
        full = kwargs.pop("state_dict", None)
        if full is not None:
            kwargs["state_dict"] = {k[len("backbone."):]: v for k, v in full.items() if k.startswith("backbone.")}
        self.backbone.save_pretrained(out, **kwargs)
        head = {k: v.detach().cpu().contiguous() for k, v in (full or self.state_dict()).items()
                if not k.startswith("backbone.")}
        save_file(head, str(out / HEAD_NAME))
        with open(out / CONFIG_NAME, "w") as f:
            json.dump({"kind": self.kind, **self.head_config()}, f, indent=2)

    def save(self, out_dir: str | os.PathLike, tokenizer=None) -> Path:
        """Save model and tokenizer atomically into `out_dir` (`io.save_model`)."""
        return io.save_model(self, tokenizer, out_dir)


class RewardModel(_PreferenceModel):
    """Bradley–Terry reward model: a scalar head on the last non-pad token."""

    kind = "reward"

    def __init__(self, backbone: nn.Module, pooling: str = "mean"):
        super().__init__(backbone, pooling)
        self.score = nn.Linear(self.hidden_size, 1)
        nn.init.normal_(self.score.weight, std=1.0 / (self.hidden_size + 1) ** 0.5)
        nn.init.zeros_(self.score.bias)

    def forward(self, input_ids, attention_mask, prompt_lengths=None) -> torch.Tensor:
        """Rewards r(x, y). [B, T] (and prompt_lengths [B] for mean pooling) -> [B]."""
        hidden = self.hidden_states(input_ids, attention_mask)
        return self.score(self.pool(hidden, attention_mask, prompt_lengths)).squeeze(-1)

    def pair_logits(self, batch: dict) -> torch.Tensor:
        """r_w − r_l for a pair batch (rows [:B] chosen, [B:] rejected). -> [B]."""
        r = self(batch["input_ids"], batch["attention_mask"], batch.get("prompt_lengths"))
        n = r.shape[0] // 2
        return r[:n] - r[n:]


class GPMModel(_PreferenceModel):
    """General preference embedding model: unit 2k-dim embeddings, skew-symmetric block operator."""

    kind = "gpm"

    def __init__(self, backbone: nn.Module, k: int = 4, tau: float = 0.1, gates: str | None = None,
                 pooling: str = "mean"):
        super().__init__(backbone, pooling)
        if gates not in GATES:
            raise PodiumError(f"gpm gates must be one of {GATES}, got {gates!r}")
        if tau <= 0:
            raise PodiumError(f"gpm tau must be > 0, got {tau}")
        self.k, self.tau, self.gates = int(k), float(tau), gates
        self.embed = nn.Linear(self.hidden_size, 2 * self.k)
        self.gate = nn.Linear(self.hidden_size, self.k) if gates else None

    def head_config(self) -> dict:
        return {"k": self.k, "tau": self.tau, "gates": self.gates, "pooling": self.pooling}

    def forward(self, input_ids, attention_mask, prompt_lengths=None):
        """Unit embeddings v [B, 2k] and gates λ [B, k] (None without gates).

        `prompt_lengths` [B] gives the number of prompt tokens, for mean pooling and gates (left
        padding is not supported for them: the prompt is assumed to start at position 0).
        """
        hidden = self.hidden_states(input_ids, attention_mask)
        v = F.normalize(self.embed(self.pool(hidden, attention_mask, prompt_lengths)), dim=-1)
        if self.gate is None:
            return v, None
        if prompt_lengths is None:
            raise ValueError("GPMModel with gates needs prompt_lengths")
        g = self.gate(gather_rows(hidden, prompt_lengths.clamp(min=1) - 1))
        # softmax: λ sums to 1 (the paper's scale gate); softplus: independent positive scales.
        lambdas = torch.softmax(g, -1) if self.gates == "softmax" else F.softplus(g)
        return v, lambdas

    def pair_logits(self, batch: dict) -> torch.Tensor:
        """s(chosen ≻ rejected) / τ for a pair batch (rows [:B] chosen, [B:] rejected). -> [B]."""
        v, lambdas = self(batch["input_ids"], batch["attention_mask"], batch.get("prompt_lengths"))
        n = v.shape[0] // 2
        # Both rows share the prompt, so the chosen row's gate stands for the pair.
        return gpm_score(v[:n], v[n:], None if lambdas is None else lambdas[:n]) / self.tau


def build_preference_model(objective: str, backbone: nn.Module, **head) -> RewardModel | GPMModel:
    """Wrap a loaded causal LM for objective `reward` (head option: pooling) or `gpm` (k, tau, gates, pooling)."""
    if objective == "reward":
        unknown = set(head) - {"pooling"}
        if unknown:
            raise PodiumError(f"unknown reward options {sorted(unknown)}; expected pooling")
        return RewardModel(backbone, **head)
    if objective == "gpm":
        unknown = set(head) - {"k", "tau", "gates", "pooling"}
        if unknown:
            raise PodiumError(f"unknown gpm options {sorted(unknown)}; expected k, tau, gates, pooling")
        return GPMModel(backbone, **head)
    raise PodiumError(f"not a preference-model objective: {objective!r} (expected 'reward' or 'gpm')")


def load_backbone(folder: Path, dtype: str = "float32") -> nn.Module:
    """The transformer body saved in `folder` (safetensors, no remote code); every backbone tensor must be there.

    A checkpoint saved from a causal LM or a reward-model class keeps its body under `model.`;
    transformers strips the prefix and reports the rest (an LM head, value heads) as unexpected.
    """
    try:
        backbone, info = AutoModel.from_pretrained(str(folder), dtype=io.resolve_dtype(dtype), trust_remote_code=False,
                                                   use_safetensors=True, output_loading_info=True,
                                                   **choose_attn_implementation(folder, None, base=True))
    except (OSError, ValueError) as e:
        raise PodiumError(f"could not load backbone from {folder}: {first_line(e)}") from None
    missing = sorted(info.get("missing_keys") or [])
    mismatched = sorted(str(m[0]) if isinstance(m, tuple) else str(m) for m in info.get("mismatched_keys") or [])
    if missing or mismatched:
        shown = ", ".join((missing + mismatched)[:5]) + (", ..." if len(missing) + len(mismatched) > 5 else "")
        raise PodiumError(f"{folder}: the backbone's weights are incomplete ({len(missing)} missing, "
                          f"{len(mismatched)} of the wrong shape: {shown})")
    return backbone


def load_preference_model(path: str | os.PathLike, *, dtype: str = "float32"):
    """Load a saved RewardModel or GPMModel and its tokenizer (safetensors only, no remote code)."""
    folder = Path(path)
    cfg_path = folder / CONFIG_NAME
    if not cfg_path.is_file():
        raise PodiumError(f"{folder}: not a preference model folder (no {CONFIG_NAME})")
    try:
        cfg = io.read_json(cfg_path)
    except json.JSONDecodeError as e:
        raise PodiumError(f"{cfg_path}: invalid JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise PodiumError(f"{cfg_path}: expected a JSON object with field 'kind', got {type(cfg).__name__}")
    kind = cfg.pop("kind", None)
    cfg.setdefault("pooling", "last")  # folders saved before pooling was a setting pooled the last token
    if kind not in ("reward", "gpm"):
        raise PodiumError(f"{cfg_path}: field 'kind' must be 'reward' or 'gpm', got {kind!r}")
    if not (folder / HEAD_NAME).is_file():
        raise PodiumError(f"{folder}: missing {HEAD_NAME}")
    check_weights_format(folder)
    backbone = load_backbone(folder, dtype)
    try:
        model = build_preference_model(kind, backbone, **cfg)
    except (PodiumError, TypeError, ValueError) as e:
        raise PodiumError(f"{cfg_path}: {e}") from None
    head = load_file(str(folder / HEAD_NAME))
    expected = {k: v.shape for k, v in model.state_dict().items() if not k.startswith("backbone.")}
    missing = sorted(set(expected) - set(head))
    unexpected = sorted(set(head) - set(expected))
    if missing or unexpected:
        raise PodiumError(f"{folder / HEAD_NAME}: head tensors do not match {CONFIG_NAME} (kind {kind!r}): "
                          f"missing {missing}, unexpected {unexpected}")
    for name, shape in expected.items():
        if head[name].shape != shape:
            fields = ", ".join(f"{k}={v!r}" for k, v in model.head_config().items())
            raise PodiumError(f"{folder / HEAD_NAME}: tensor {name!r} has shape {list(head[name].shape)}, but "
                              f"{CONFIG_NAME} ({fields}) needs {list(shape)}")
    model.load_state_dict(head, strict=False)
    model.to(next(backbone.parameters()).dtype)
    model.eval()
    return model, io.load_tokenizer(folder)
