"""Everything in a merged model's folder besides its weights: config.json, tokenizer files, the card.

config.json is the base model's with `num_hidden_layers` set to the merged depth and, for
models whose layers differ by kind (Gemma-2's alternating sliding/full attention: `layer_types`),
each output layer's kind taken from the input layer it came from. The README is mergekit's kind
of card for a merged folder (models merged, the config); a run's model card is `podium.cards`'.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

from podium.errors import PodiumError
from podium.merging.config import MergeConfig
from podium.merging.plan import MergePlan
from podium.merging.reader import ModelSource
from podium.models.dtypes import canonical_name

TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "vocab.json", "merges.txt", "vocab.txt", "added_tokens.json", "chat_template.jinja"]
# Per-layer lists in a config, one entry per decoder layer, that follow the layers they describe.
PER_LAYER_KEYS = ("layer_types",)


def output_config(cfg: MergeConfig, plan: MergePlan) -> dict:
    """The merged model's config.json: the base's, with depth, per-layer kinds and dtype updated."""
    out = copy.deepcopy(plan.base.config)
    target = out.get("text_config", out) if "num_hidden_layers" not in out else out
    target["num_hidden_layers"] = plan.num_layers
    for key in PER_LAYER_KEYS:
        if isinstance(target.get(key), list):
            target[key] = [_layer_entry(model, layer, key) for model, layer in plan.layer_sources]
    name = cfg.out_dtype or cfg.dtype
    if name:
        out["dtype" if "dtype" in out or "torch_dtype" not in out else "torch_dtype"] = canonical_name(name)
    return out


def _layer_entry(model: ModelSource, layer: int, key: str):
    values = model.text_config.get(key) or []
    if layer >= len(values):
        raise PodiumError(f"model {model.ref}: config.json `{key}` has {len(values)} entries, layer {layer} has none")
    return values[layer]


def tokenizer_source(cfg: MergeConfig, plan: MergePlan) -> ModelSource:
    """The model whose tokenizer the merge keeps (`tokenizer_source`: base, union of equal vocabularies, a model)."""
    source = cfg.tokenizer_source
    if source in (None, "base"):
        return plan.base
    if source == "union":
        vocabs = {ref: _vocabulary(m.path / "tokenizer.json") for ref, m in plan.models.items()}
        if len(set(vocabs.values())) > 1:
            raise PodiumError("tokenizer_source: union of different vocabularies is not supported; the models' "
                              f"tokenizers differ ({', '.join(vocabs)}). Use tokenizer_source: base")
        return plan.base
    return plan.models.get(source) or ModelSource(source)


def _vocabulary(file: Path) -> str | None:
    if not file.is_file():
        return None
    tok = json.loads(file.read_text())
    return json.dumps([tok.get("model", {}).get("vocab"), tok.get("added_tokens")], sort_keys=True)


def write_extras(cfg: MergeConfig, plan: MergePlan, folder: Path, tokenizer: ModelSource) -> None:
    """config.json, `tokenizer`'s files and the base's generation config, README card, mergekit_config.yml."""
    (folder / "config.json").write_text(json.dumps(output_config(cfg, plan), indent=2))
    src = tokenizer
    for name in TOKENIZER_FILES:
        if (src.path / name).is_file():
            shutil.copy2(src.path / name, folder / name)
    gen = plan.base.path / "generation_config.json"
    if gen.is_file():
        shutil.copy2(gen, folder / "generation_config.json")
    (folder / "README.md").write_text(merge_card(cfg))
    (folder / "mergekit_config.yml").write_text(cfg.to_yaml() + "\n")


def merge_card(cfg: MergeConfig) -> str:
    """A merged folder's README: base models (Hub metadata), method, models merged and the config."""
    models = cfg.referenced_models()
    base = [m.partition("+")[0] for m in models]
    lines = ["---", "base_model:", *[f"- {m}" for m in base], "library_name: transformers",
             "tags:", "- merge", "- podium", "---", "", "# Merged model", "",
             (f"This model was merged with podium using the **{cfg.merge_method}** merge method "
              "(mergekit-compatible configuration)."), "", "## Models merged", ""]
    lines += [f"- {m}" + (" (base)" if m == cfg.base_model else "") for m in models]
    lines += ["", "## Configuration", "", "```yaml", cfg.to_yaml(), "```", ""]
    return "\n".join(lines)
