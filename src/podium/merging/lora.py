"""LoRA adapters folded into their base weights: W' = W + s · B A (Hu et al. 2021, arXiv:2106.09685).

s = lora_alpha / r (or lora_alpha / sqrt(r) with rsLoRA). Deltas are computed tensor by tensor
when the reader (`reader.ModelSource`) reads a base weight, so a merge never holds the whole model.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import torch
from safetensors import safe_open

from podium.errors import PodiumError
from podium.limits import read_json_bounded

_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.[^.]+)?\.weight$")


class LoraAdapter:
    """A PEFT LoRA adapter folder: adapter_config.json + adapter_model.safetensors."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        cfg_file = self.path / "adapter_config.json"
        weights = self.path / "adapter_model.safetensors"
        if not cfg_file.is_file() or not weights.is_file():
            raise PodiumError(f"{self.path}: not a LoRA adapter folder (needs adapter_config.json and "
                              "adapter_model.safetensors)")
        self.config = read_json_bounded(cfg_file, what="adapter_config.json")
        if not isinstance(self.config, dict):
            raise PodiumError(f"{cfg_file}: not a JSON object")
        if self.config.get("peft_type", "LORA") != "LORA":
            raise PodiumError(f"{cfg_file}: peft_type {self.config.get('peft_type')!r} is not LORA")
        if self.config.get("use_dora"):
            raise PodiumError(f"{cfg_file}: DoRA adapters are not supported (use_dora: true)")
        pairs: dict[str, dict[str, torch.Tensor]] = {}
        with safe_open(str(weights), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 - safe_open is not iterable
                m = _KEY.match(key)
                if not m:
                    raise PodiumError(f"{weights}: tensor {key!r} is not a lora_A/lora_B weight; adapters with "
                                      "modules_to_save or embedding LoRA are not supported")
                pairs.setdefault(m["module"], {})[m["ab"]] = f.get_tensor(key)
        self.pairs = {}
        for module, ab in pairs.items():
            if set(ab) != {"A", "B"}:
                raise PodiumError(f"{weights}: module {module!r} lacks lora_{'B' if 'A' in ab else 'A'}")
            self.pairs[module + ".weight"] = (ab["A"], ab["B"], self._scale(module, ab["A"].shape[0]))

    def _scale(self, module: str, r: int) -> float:
        alpha = self.config.get("lora_alpha", 8)
        for pattern, value in (self.config.get("alpha_pattern") or {}).items():
            if re.match(rf"(.*\.)?{pattern}$", module):
                alpha = value
                break
        return alpha / math.sqrt(r) if self.config.get("use_rslora") else alpha / r

    @property
    def base_model_name(self) -> str | None:
        return self.config.get("base_model_name_or_path")

    def delta(self, weight_name: str) -> torch.Tensor | None:
        """s · B A for one base weight ([out, in]), or None when the adapter does not touch it."""
        if weight_name not in self.pairs:
            return None
        a, b, scale = self.pairs[weight_name]
        d = (b.float() @ a.float()) * scale
        return d.T if self.config.get("fan_in_fan_out") else d

    def apply(self, weight_name: str, weight: torch.Tensor) -> torch.Tensor:
        d = self.delta(weight_name)
        if d is None:
            return weight
        if d.shape != weight.shape:
            raise PodiumError(f"{self.path}: LoRA delta for {weight_name} has shape {tuple(d.shape)}, base weight "
                              f"has {tuple(weight.shape)}; is this adapter for another base model?")
        return (weight.float() + d).to(weight.dtype)

    def check_targets(self, names: set[str]) -> None:
        missing = sorted(set(self.pairs) - names)
        if missing:
            raise PodiumError(f"{self.path}: the adapter targets {missing[0]}, which the base model lacks "
                              f"({len(missing)} such weights)")
