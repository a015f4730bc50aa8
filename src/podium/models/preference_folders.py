"""Preference-model folders in either layout: podium's own, or the GPM code's released checkpoints.

podium's layout (`podium.models.heads`): the backbone, `head.safetensors` and `preference_model.json`.

The GPM code's layout (the general-preference/GPM-* checkpoints; Zhang et al. 2024, arXiv:2410.02197;
code: general_preference/models/rw_model_general_preference.py `_get_reward_model`, and the model
cards' gpm_example_usage.py `GPMPipeline`): a `CustomRewardModel`, a causal-LM class, saved with
`save_pretrained`, so its safetensors hold the backbone under `model.` and, beside it,

- `value_head.weight` [2k, H], no bias: v = normalize(W h) (L2), h the last-layer state of the last
  token; 2k = `value_head_dim` >= 2 (`is_general_preference`; a [1, H] head is a Bradley–Terry reward);
- `prompt_head.weight` [k, H], no bias, only with `add_prompt_head`: gates lambda(x) = softmax(W_p h_x),
  h_x the state of the prompt's last token (the inference code's softmax, without a temperature),
  else lambda = 1;
- `config.json` is the backbone's own (`architectures: ["CustomRewardModel"]`): value_head_dim and
  add_prompt_head are read from the tensors, as `GPMPipeline` does; tau is not stored (the code's
  default 0.1 is used unless the judge sets `tau`).

Both load as a `GPMModel` (last-token pooling, zero head biases). Sequences for the GPM code's
checkpoints are rendered as its training data and `GPMPipeline` render them (`encode_released`).
Loading is safetensors-only and never runs remote code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors import safe_open

from podium.data.chat import as_messages
from podium.data.response_batches import encode_response
from podium.errors import PodiumError
from podium.models import io
from podium.models.folder_checks import check_model_folder, check_weights_format
from podium.models.heads import CONFIG_NAME, GPMModel, load_backbone, load_preference_model

VALUE_HEAD = "value_head.weight"
PROMPT_HEAD = "prompt_head.weight"
RELEASED_TAU = 0.1  # GPMPipeline's default and the tau of the GPM code's self-play runs (RM_CONFIGS)


class PreferenceFolder(NamedTuple):
    model: torch.nn.Module
    tokenizer: object
    encode: object  # encode(tokenizer, prompt, response) -> (ids, prompt_tokens)
    layout: str  # "podium" or "released"


def find_tensors(folder: Path, names: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The named tensors found in the folder's *.safetensors (headers are read; only these tensors load)."""
    found = {}
    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            for name in set(names) & set(st.keys()):
                found[name] = st.get_tensor(name)
    return found


def is_released_gpm(path: str | os.PathLike) -> bool:
    """A folder in the GPM code's layout: no preference_model.json, a value_head.weight tensor."""
    folder = Path(path)
    return not (folder / CONFIG_NAME).is_file() and bool(find_tensors(folder, (VALUE_HEAD,)))


def encode_released(tokenizer, prompt, response) -> tuple[list[int], int]:
    """Token ids of prompt + response as the GPM code feeds them, and the prompt's token count.

    As its training data (datasets/reward_dataset.py) and `GPMPipeline`: the chat template's text,
    tokenised with the tokenizer's special tokens (a template that writes BOS gets a second one, as
    in training), the last token replaced by EOS. The prompt state (for the gates) is the last token
    of the prompt rendered alone without a generation prompt; the code finds it from the end as
    (tokens of the whole) - (tokens of the prompt) response tokens, which is index `prompt_tokens - 1`.
    """
    prompt_msgs = as_messages(prompt, "user")
    full = tokenizer.apply_chat_template(prompt_msgs + as_messages(response, "assistant"), tokenize=False)
    ids = list(tokenizer(full)["input_ids"])
    ids[-1] = tokenizer.eos_token_id
    head = tokenizer.apply_chat_template(prompt_msgs, tokenize=False)
    return ids, min(len(tokenizer(head)["input_ids"]), len(ids))


def load_released_gpm(path: str | os.PathLike, *, tau: float | None = None, dtype: str = "float32"):
    """A GPM checkpoint in the GPM code's layout as a `GPMModel` and its tokenizer."""
    folder = Path(path)
    check_weights_format(folder)
    check_model_folder(folder)
    heads = find_tensors(folder, (VALUE_HEAD, PROMPT_HEAD))
    if VALUE_HEAD not in heads:
        raise PodiumError(f"{folder}: no tensor {VALUE_HEAD!r} in its *.safetensors, so this is not a GPM checkpoint "
                          f"(and there is no {CONFIG_NAME}, podium's preference-model layout)")
    backbone = load_backbone(folder, dtype)
    hidden = backbone.config.hidden_size
    value = heads[VALUE_HEAD]
    if value.dim() != 2 or value.shape[1] != hidden:
        raise PodiumError(f"{folder}: tensor {VALUE_HEAD!r} has shape {list(value.shape)}; the GPM code's value head "
                          f"is [value_head_dim, hidden_size = {hidden}]")
    dim = value.shape[0]
    if dim == 1:
        raise PodiumError(f"{folder}: tensor {VALUE_HEAD!r} is [1, {hidden}], a Bradley–Terry reward model "
                          "(is_general_preference false); judge kind 'gpm' needs value_head_dim >= 2")
    if dim % 2:
        raise PodiumError(f"{folder}: tensor {VALUE_HEAD!r} has value_head_dim {dim}; a GPM embedding has an even size")
    prompt = heads.get(PROMPT_HEAD)
    if prompt is not None and list(prompt.shape) != [dim // 2, hidden]:
        raise PodiumError(f"{folder}: tensor {PROMPT_HEAD!r} has shape {list(prompt.shape)}; with value_head_dim {dim} "
                          f"the prompt head is [{dim // 2}, {hidden}]")
    model = GPMModel(backbone, k=dim // 2, tau=RELEASED_TAU if tau is None else tau,
                     gates=None if prompt is None else "softmax")
    # The released checkpoints pool the last token; GPMModel reads `pooling` where it has that setting.
    model.pooling = "last"
    with torch.no_grad():
        model.embed.weight.copy_(value)
        model.embed.bias.zero_()
        if prompt is not None:
            model.gate.weight.copy_(prompt)
            model.gate.bias.zero_()
    dtype_ = next(backbone.parameters()).dtype
    model.to(dtype_).eval()
    tokenizer = io.load_tokenizer(folder)
    if not getattr(tokenizer, "chat_template", None):
        raise PodiumError(f"{folder}: its tokenizer has no chat template; the GPM code renders prompt and response "
                          "with it (tokenizer_config.json field 'chat_template' or chat_template.jinja)")
    return model, tokenizer


def load_preference_folder(path: str | os.PathLike, *, tau: float | None = None, dtype: str = "float32") -> PreferenceFolder:
    """podium's layout (preference_model.json) or the GPM code's (value_head.weight), and how to encode for it.

    ``tau`` overrides a GPM's temperature (None: the folder's, or 0.1 for the GPM code's checkpoints).
    """
    folder = Path(path)
    if not folder.is_dir():
        raise PodiumError(f"{folder}: no such preference-model folder")
    if (folder / CONFIG_NAME).is_file():
        model, tokenizer = load_preference_model(folder, dtype=dtype)
        if tau is not None and hasattr(model, "tau"):
            model.tau = float(tau)
        return PreferenceFolder(model, tokenizer, encode_response, "podium")
    if is_released_gpm(folder):
        model, tokenizer = load_released_gpm(folder, tau=tau, dtype=dtype)
        return PreferenceFolder(model, tokenizer, encode_released, "released")
    raise PodiumError(f"{folder}: not a preference-model folder: no {CONFIG_NAME} (podium's layout) and no tensor "
                      f"{VALUE_HEAD!r} in its *.safetensors (the GPM code's layout)")
