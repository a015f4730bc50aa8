"""Model FLOPs of a training step, the machine's peak matmul rate, and MFU (model FLOPs utilisation).

MFU = model FLOPs per second / peak FLOPs per second (Chowdhery et al. 2022, "PaLM", appendix B): the
fraction of the hardware's matmul rate that went into the model's own arithmetic. Padding, masked-out
attention, recomputation and anything else a layout wastes count as zero, so MFU says how far a run is
from the hardware limit, not how busy the hardware was.

Model FLOPs of one micro-batch (a multiply-add is 2 FLOPs; training = forward + backward, the backward
costing twice the forward for weights that are trained and once for frozen ones, which still pass
gradients to their inputs):

    forward  = 2 * N_body * T  +  2 * V * d * L_logits  +  sum over layers of 4 * d_attn * K_layer
    training = forward  +  (2 * N_body + 2 * N_body_trainable) * T  +  (2 + 2 * trainable_head) * V * d * L_logits
               +  2 * sum over layers of 4 * d_attn * K_layer

- T: real (non-padding) tokens of the forward. A layout that computes a token once counts it once:
  with prefix sharing the prompt of a pair is one forward, so it is counted once (TRL's layout
  computes it twice, and would count it twice). Where that prompt forward's last layer computes only
  keys and values (`podium.training.prompt_pass`), its other matmuls and attention are not counted for
  the prompt tokens.
- N_body: parameters of the matmuls applied to every token: every weight matrix except the input
  embedding (a lookup) and the LM head; a mixture-of-experts layer counts `num_experts_per_tok /
  num_experts` of its expert weights (the experts a token uses). Vectors (norms, biases) are left out.
- V * d * L_logits: the LM head, applied only at the `L_logits` positions whose logits are computed
  (`pred_mask` of podium's batches; all real tokens otherwise). With full logits on every token and
  N = N_body + V * d this is Kaplan et al. 2020's C_forward = 2N per token, and training's 6N.
- K_layer: query-key pairs the layer's mask lets through, summed over real tokens: a token at position
  p sees p + 1 keys (causal), at most the sliding window on sliding-window layers. The attention term is
  4 * d_attn per pair (QK^T and the weighted sum of V, d_attn = heads x head_dim), forward. PaLM's
  12 * L * H * Q * T per token counts every pair of a length-T context, twice what a causal mask leaves.

The peak is measured once per machine (a second of fp32 or bf16 square matmuls, the best timing;
`measure_peak_flops`) and cached in `~/.cache/podium/peak_flops.json` (or `$PODIUM_CACHE`) under the CPU or GPU name,
the dtype, the thread count and the torch version. `PODIUM_PEAK_FLOPS` (FLOP/s) overrides it. On a
machine that other jobs share, the measured peak is lower than the hardware's and MFU reads high.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from podium.training.prompt_pass import last_layer

PEAK_ENV = "PODIUM_PEAK_FLOPS"


@dataclass(frozen=True)
class TrainingFlops:
    """The model's shape as the FLOP count needs it; call it on a batch to get that batch's training FLOPs."""

    body: float  # N_body (MoE experts scaled by top_k / num_experts)
    body_trainable: float
    head: float  # V * d of the LM head (0 when the model has none)
    head_trainable: bool
    attention_width: int  # d_attn = heads x head_dim
    windows: tuple[int | None, ...]  # per layer: sliding window or None (full attention)
    # The last layer's weights besides its key and value projections, total and trainable: what a prompt
    # token skips when the prompt forward's last layer computes only keys and values (training/prompt_pass.py).
    prompt_skip: float = 0.0
    prompt_skip_trainable: float = 0.0

    @classmethod
    def from_model(cls, model: torch.nn.Module) -> TrainingFlops:
        """Read the shape off `model` (a causal LM, a preference model on a backbone, DDP- or PEFT-wrapped)."""
        config = text_config(model)
        out = output_head(model)
        lookups = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
        if out is not None:
            lookups.add(id(out.weight))
        experts = getattr(config, "num_local_experts", None) or getattr(config, "num_experts", None)
        top_k = getattr(config, "num_experts_per_tok", None)
        body = trainable = 0.0
        for name, p in model.named_parameters():
            if p.dim() < 2 or id(p) in lookups:
                continue
            n = float(p.numel())
            if experts and top_k and ".experts." in name:
                n *= top_k / experts
            body += n
            trainable += n if p.requires_grad else 0.0
        head = float(out.weight.numel()) if out is not None else 0.0
        heads = getattr(config, "num_attention_heads", 0) or 0
        head_dim = getattr(config, "head_dim", None) or (config.hidden_size // heads if heads else 0)
        layers = getattr(config, "num_hidden_layers", 0) or 0
        window = getattr(config, "sliding_window", None)
        types = getattr(config, "layer_types", None) or (
            ["sliding_attention" if window else "full_attention"] * layers)
        windows = tuple(window if t == "sliding_attention" and window else None for t in types)
        skip = skip_trainable = 0.0
        last = last_layer(model)
        if last is not None:
            kept = {id(last.self_attn.k_proj.weight), id(last.self_attn.v_proj.weight)}
            for p in last.parameters():
                if p.dim() >= 2 and id(p) not in kept:
                    skip += float(p.numel())
                    skip_trainable += float(p.numel()) if p.requires_grad else 0.0
        return cls(body, trainable, head, bool(out is not None and out.weight.requires_grad), heads * head_dim,
                   windows, skip, skip_trainable)

    def __call__(self, batch: dict) -> float:
        """Training FLOPs of one micro-batch (module doc).

        Reads `input_ids`, the real tokens (`token_mask`, else `attention_mask`, else all), their positions
        (`position_ids`, else counted from the start of each row) and `pred_mask` when present; or, for a
        layout of several forwards, `token_positions` (every real token's position) and `logit_rows`.
        """
        if "token_positions" in batch:  # a layout of several forwards (training/logps.py) lists its tokens
            seen = batch["token_positions"].double() + 1
            total = self._total(float(seen.numel()), float(batch["logit_rows"]), seen)
            return total - self._prompt_pass_saving(seen[:batch.get("prompt_tokens", 0)])
        ids = batch["input_ids"]
        real = batch.get("token_mask")
        if real is None:
            real = batch.get("attention_mask")
        real = torch.ones_like(ids, dtype=torch.bool) if real is None else real.bool()
        pos = batch.get("position_ids")
        if pos is None:
            pos = real.long().cumsum(-1) - 1
        seen = (pos.to(real.device).double() + 1)[real]
        tokens = float(real.sum())
        pred = batch.get("pred_mask")
        logits = float(pred.sum()) if pred is not None else (tokens if self.head else 0.0)
        return self._total(tokens, logits, seen)

    def _prompt_pass_saving(self, seen: torch.Tensor) -> float:
        """FLOPs the prompt tokens `seen` `[n]` skip in a last layer that computes only keys and values: its
        other matmuls and its attention, forward and backward."""
        if not self.prompt_skip or not len(seen):
            return 0.0
        window = self.windows[-1] if self.windows else None
        pairs = float((seen if window is None else seen.clamp(max=window)).sum())
        n = float(len(seen))
        return ((4 * self.prompt_skip + 2 * self.prompt_skip_trainable) * n
                + 12 * self.attention_width * pairs)

    def _total(self, tokens: float, logits: float, seen: torch.Tensor) -> float:
        """Training FLOPs of `tokens` real tokens, `logits` LM-head rows, `seen` `[tokens]` keys each token sees."""
        pairs = sum(float(seen.sum()) if w is None else float(seen.clamp(max=w).sum()) for w in self.windows)
        forward = 2 * self.body * tokens + 2 * self.head * logits + 4 * self.attention_width * pairs
        backward = ((2 * self.body + 2 * self.body_trainable) * tokens
                    + (2 + 2 * self.head_trainable) * self.head * logits + 8 * self.attention_width * pairs)
        return forward + backward


def text_config(model: torch.nn.Module):
    """The (text) config of the first module of `model` that carries a transformers config."""
    for m in model.modules():
        config = getattr(m, "config", None)
        if config is not None and hasattr(config, "num_hidden_layers"):
            return config.get_text_config() if hasattr(config, "get_text_config") else config
    raise ValueError(f"{type(model).__name__} holds no transformers model config")


def output_head(model: torch.nn.Module):
    """The LM head (`get_output_embeddings`) of the first module of `model` that has one, else None."""
    for m in model.modules():
        if hasattr(m, "get_output_embeddings"):
            out = m.get_output_embeddings()
            if out is not None and getattr(out, "weight", None) is not None:
                return out
    return None


def device_name(device: torch.device) -> str:
    """The CPU model or GPU name, as the peak cache's key."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure_peak_flops(device: torch.device, dtype: torch.dtype, seconds: float = 1.0) -> float:
    """Best FLOP/s of a square matmul on `device` in `dtype`, timed repeatedly for about `seconds`.

    On a CPU each timing is one 512 x 512 product (a few ms), so that on a machine other processes share
    some timings fall in a slice where this process has the core to itself: the best of them is close to
    the unshared rate, where a long product would measure the sharing. On a GPU, 8 products of 4096.
    """
    cuda = device.type == "cuda"
    n, reps = (4096, 8) if cuda else (512, 1)
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    torch.mm(a, b)  # warm-up: kernel selection, page faults
    sync()
    best, start = float("inf"), time.perf_counter()
    while time.perf_counter() - start < seconds or best == float("inf"):
        t = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b)
        sync()
        best = min(best, (time.perf_counter() - t) / reps)
    return 2.0 * n**3 / best


def cache_path() -> Path:
    root = os.environ.get("PODIUM_CACHE") or Path.home() / ".cache" / "podium"
    return Path(root) / "peak_flops.json"


def peak_flops(device: torch.device | str, dtype: torch.dtype) -> float:
    """The machine's peak matmul FLOP/s for `dtype` on `device`: `PODIUM_PEAK_FLOPS`, else cached, else measured."""
    if os.environ.get(PEAK_ENV):
        return float(os.environ[PEAK_ENV])
    device = torch.device(device)
    threads = torch.get_num_threads() if device.type == "cpu" else 0
    key = f"{device.type}|{device_name(device)}|{str(dtype).replace('torch.', '')}|threads={threads}|torch={torch.__version__}"
    path = cache_path()
    try:
        known = json.loads(path.read_text())
        if isinstance(known, dict) and isinstance(known.get(key), dict) and float(known[key]["flops"]) > 0:
            return float(known[key]["flops"])
    except (OSError, ValueError, TypeError, KeyError):
        known = {}
    value = measure_peak_flops(device, dtype)
    known = known if isinstance(known, dict) else {}
    known[key] = {"flops": value, "measured": time.strftime("%Y-%m-%dT%H:%M:%S"),
                  "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    try:  # temporary name, then rename: a reader never sees half a file
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(known, indent=1))
        os.replace(tmp, path)
    except OSError:
        pass  # an unwritable cache only costs a re-measurement next time
    return value
