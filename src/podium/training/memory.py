"""Peak memory per process of a training stage, estimated before launch from the model's config.json shape.

`podium run --dry-run` (and every `podium run`) prints, per training stage, what one process will hold at
its peak and whether it fits the devices of the launch (`launch: {gpu_memory_gb: 80}`, else the visible
GPUs, else this machine's memory). The parts, in bytes, for P parameters (P_t of them trained), W processes,
weights in `dtype` (the stage's) and compute in `c` bytes (2 under bf16 mixed precision):

  replicated (one process, DDP)   weights P*b, gradients P_t*b (+ DDP's buckets, as large), optimizer s*P_t*4
  FSDP2 (podium)                  weights P*b/W + the gathered units in c (the root, i.e. embeddings and LM
                                  head, for the whole step; two decoder layers at a time: the running one and
                                  the prefetched one), gradients P_t*b/W + one layer's unsharded gradients,
                                  optimizer s*P_t*4/W; with CPU offload the sharded parts live in host memory
  DeepSpeed ZeRO-3                DeepSpeed's own accounting (its `estimate_zero3_model_states_mem_needs`):
                                  18*P/W bytes + 4 * the largest module's parameters on the GPU; with the
                                  optimizer offloaded 2*P/W + 4 * largest on the GPU and 16*P/W in host memory

with s the optimizer's fp32 states per parameter (AdamW 2, RMSprop 1, SGD 0). Activations are those a
transformers decoder layer keeps for its backward, per token: 4h (two RMSNorms' inputs and outputs) +
3q (queries, attention output, o_proj input) + 2kv (keys, values) + 4I (gate, up, act(gate), their product),
plus the attention probabilities (heads x T per token) when the attention kernel materialises them (eager;
sdpa's math kernel on CPU), times the layers; under activation checkpointing one h per layer plus one
layer's. Tokens per micro-batch: batch_size x max_length (x2 for a pair's chosen and rejected). Logits are
podium's: only the predicting positions, log-softmaxed in fp32 chunks (podium.training.logps), so
N x V x c for the logits, N x V x 4 for the fp32 copies the backward keeps when c < 4, and N x V x c for
their gradient. The peak is the model states plus the larger of (activations + logits) and the gradients
being accumulated.

Checked against measured per-process peaks (torch's MemTracker) of 1- and 2-process CPU runs at three model
sizes (`benchmarks/sharded_memory.py`) and against DeepSpeed's formula on the full-scale recipes' shapes
(`tests/unit/test_memory.py`). Not counted: the CUDA context and allocator fragmentation (~1-3 GB per GPU),
NCCL buffers, and the frozen reference model of a DPO stage (podium scores it before training and frees it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import try_to_load_from_cache

GiB = 2**30

# config.json shapes of the full-scale recipes' models, written from their public configs (no download); checked
# field by field against the published files in tests/unit/test_memory.py (PUBLISHED, with their addresses).
KNOWN_CONFIGS: dict[str, dict] = {
    # Smaug-72B-v0.1: Qwen-72B's shape as a Llama (MoMo-72B): 80 layers, 8192 wide, 152064 tokens, q/k/v biases.
    "abacusai/Smaug-72B-v0.1": {"model_type": "llama", "vocab_size": 152064, "hidden_size": 8192,
                                "intermediate_size": 24576, "num_hidden_layers": 80, "num_attention_heads": 64,
                                "num_key_value_heads": 64, "attention_bias": True, "tie_word_embeddings": False},
    "mistralai/Mixtral-8x7B-Instruct-v0.1": {"model_type": "mixtral", "vocab_size": 32000, "hidden_size": 4096,
                                             "intermediate_size": 14336, "num_hidden_layers": 32,
                                             "num_attention_heads": 32, "num_key_value_heads": 8, "num_local_experts": 8,
                                             "num_experts_per_tok": 2, "tie_word_embeddings": False},
    "upstage/SOLAR-10.7B-Instruct-v1.0": {"model_type": "llama", "vocab_size": 32000, "hidden_size": 4096,
                                          "intermediate_size": 14336, "num_hidden_layers": 48, "num_attention_heads": 32,
                                          "num_key_value_heads": 8, "tie_word_embeddings": False},
    "google/gemma-2-9b-it": {"model_type": "gemma2", "vocab_size": 256000, "hidden_size": 3584,
                             "intermediate_size": 14336, "num_hidden_layers": 42, "num_attention_heads": 16,
                             "num_key_value_heads": 8, "head_dim": 256, "tie_word_embeddings": True},
    "meta-llama/Meta-Llama-3-8B-Instruct": {"model_type": "llama", "vocab_size": 128256, "hidden_size": 4096,
                                            "intermediate_size": 14336, "num_hidden_layers": 32,
                                            "num_attention_heads": 32, "num_key_value_heads": 8,
                                            "tie_word_embeddings": False},
}
# The same shapes under the names the recipes reach them by.
KNOWN_CONFIGS["VAGOsolutions/SauerkrautLM-SOLAR-Instruct"] = KNOWN_CONFIGS["upstage/SOLAR-10.7B-Instruct-v1.0"]

OPTIMIZER_STATES = {"adamw": 2, "rmsprop": 1, "sgd": 0}
DTYPE_BYTES = {"float32": 4, "fp32": 4, "bfloat16": 2, "bf16": 2, "float16": 2, "fp16": 2}


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs of a decoder-only transformer, read from its config.json."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    tie_word_embeddings: bool = False
    num_experts: int = 0  # 0: a dense MLP
    attention_bias: str = ""  # "qkv" (Qwen2), "qkvo" (Llama's attention_bias), "": none
    norms_per_layer: int = 2  # Gemma-2 has four
    eager_attention: bool = False  # Gemma-2 runs eager attention (soft-capping), which keeps the probabilities

    @classmethod
    def from_config(cls, cfg: dict) -> ModelShape:
        heads = int(cfg["num_attention_heads"])
        hidden = int(cfg["hidden_size"])
        model_type = str(cfg.get("model_type", ""))
        return cls(vocab_size=int(cfg["vocab_size"]), hidden_size=hidden, intermediate_size=int(cfg["intermediate_size"]),
                   num_layers=int(cfg["num_hidden_layers"]), num_heads=heads,
                   num_kv_heads=int(cfg.get("num_key_value_heads") or heads),
                   head_dim=int(cfg.get("head_dim") or hidden // heads),
                   tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
                   num_experts=int(cfg.get("num_local_experts") or 0),
                   attention_bias="qkv" if model_type == "qwen2" else "qkvo" if cfg.get("attention_bias") else "",
                   norms_per_layer=4 if model_type == "gemma2" else 2, eager_attention=model_type == "gemma2")

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def attention_params(self) -> int:
        h, q, kv = self.hidden_size, self.q_size, self.kv_size
        bias = (q + 2 * kv if self.attention_bias else 0) + (h if self.attention_bias == "qkvo" else 0)
        return h * q + 2 * h * kv + q * h + bias

    @property
    def mlp_params(self) -> int:
        h, i = self.hidden_size, self.intermediate_size
        if self.num_experts:
            return self.num_experts * 3 * h * i + h * self.num_experts  # experts + router
        return 3 * h * i

    @property
    def layer_params(self) -> int:
        return self.attention_params + self.mlp_params + self.norms_per_layer * self.hidden_size

    @property
    def root_params(self) -> int:
        """Embeddings, final norm and (untied) LM head: FSDP2's root unit."""
        embed = self.vocab_size * self.hidden_size
        return embed * (1 if self.tie_word_embeddings else 2) + self.hidden_size

    @property
    def parameters(self) -> int:
        return self.root_params + self.num_layers * self.layer_params

    @property
    def largest_module(self) -> int:
        """Parameters of the largest single module (its own, not its children's): DeepSpeed's "largest layer"."""
        h, i = self.hidden_size, self.intermediate_size
        candidates = [self.vocab_size * h, h * i, self.q_size * h]
        if self.num_experts:
            candidates.append(self.num_experts * 3 * h * i)  # transformers' fused experts module
        return max(candidates)

    def lora_parameters(self, r: int) -> int:
        """Trainable parameters of LoRA rank `r` on every linear layer of the decoder ("all-linear")."""
        h, i, q, kv = self.hidden_size, self.intermediate_size, self.q_size, self.kv_size
        attention = r * ((h + q) + 2 * (h + kv) + (q + h))
        mlp = r * 3 * (h + i) * max(1, self.num_experts)
        return self.num_layers * (attention + mlp)

    def activation_elements(self, attention_probs_len: int = 0) -> int:
        """Elements one decoder layer keeps for its backward, per token (see the module doc)."""
        h, i = self.hidden_size, self.intermediate_size
        mlp = 4 * i * (1 if not self.num_experts else 2)  # MoE: each token through its top-2 experts
        return 2 * self.norms_per_layer * h + 3 * self.q_size + 2 * self.kv_size + mlp + self.num_heads * attention_probs_len


@dataclass(frozen=True)
class TrainingSetup:
    """How one process of a training stage runs."""

    processes: int = 1
    sharding: str = "replicated"  # "replicated" (one process, DDP), "fsdp2", "zero3"
    weight_bytes: int = 4  # the stage's dtype
    compute_bytes: int = 4  # 2 under bf16 mixed precision
    optimizer: str = "adamw"
    lora_r: int | None = None
    offload_optimizer: bool = False  # ZeRO-3's offload_optimizer_device: cpu
    cpu_offload: bool = False  # FSDP2's CPUOffloadPolicy
    reshard_after_forward: bool = True
    activation_checkpointing: bool = False
    batch_size: int = 1  # micro-batch per process
    sequences_per_example: int = 1  # 2 for preference pairs
    max_length: int = 512
    attention_probs: bool = False  # the attention kernel materialises softmax(QK^T) (eager, or sdpa on CPU)
    predicted_fraction: float = 1.0  # share of positions whose logits podium computes (completion tokens); 1: a bound


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one process holds at its peak, by part, and in host memory (offloaded state)."""

    parameters: int
    gradients: int
    optimizer: int
    activations: int
    logits: int
    host: int = 0

    @property
    def peak(self) -> int:
        return self.parameters + self.optimizer + max(self.activations + self.logits, self.gradients)

    def parts(self) -> dict[str, float]:
        return {"parameters": self.parameters, "gradients": self.gradients, "optimizer": self.optimizer,
                "activations": self.activations, "logits": self.logits, "peak": self.peak, "host": self.host}


def estimate(shape: ModelShape, setup: TrainingSetup) -> MemoryEstimate:
    """The per-process peak of training `shape` under `setup` (formulas in the module doc)."""
    w, c, world = setup.weight_bytes, setup.compute_bytes, max(1, setup.processes)
    total = shape.parameters
    trained = shape.lora_parameters(setup.lora_r) if setup.lora_r else total
    states = OPTIMIZER_STATES[setup.optimizer] * 4
    tokens = setup.batch_size * setup.sequences_per_example * setup.max_length
    probs = setup.max_length if setup.attention_probs or shape.eager_attention else 0
    if setup.activation_checkpointing:
        activations = tokens * c * (shape.num_layers * shape.hidden_size + shape.activation_elements(probs))
    else:
        activations = tokens * c * shape.num_layers * shape.activation_elements(probs)
    logits = int(tokens * setup.predicted_fraction) * shape.vocab_size * (2 * c + (4 if c < 4 else 0))
    host = 0
    if setup.sharding == "zero3":
        largest = 4 * shape.largest_module
        if setup.offload_optimizer:
            params, grads, opt = 2 * total // world + largest, 0, 0
            host = (8 + states) * trained // world  # fp32 gradients and master weights, the optimizer's states
        else:  # DeepSpeed's 18 bytes: 2 (16-bit weights) + 4 (fp32 gradients) + 12 (fp32 master, Adam's two states)
            params, grads, opt = 2 * total // world + largest, 4 * trained // world, (4 + states) * trained // world
        return MemoryEstimate(params, grads, opt, activations, logits, host)
    if setup.sharding == "fsdp2":
        gathered = shape.root_params * c + (2 if setup.reshard_after_forward else shape.num_layers) * shape.layer_params * c
        sharded_params, sharded_grads, opt = total * w // world, trained * w // world, states * trained // world
        unsharded_grads = shape.layer_params * c if not setup.lora_r else shape.lora_parameters(setup.lora_r) * c
        if setup.cpu_offload:
            host = sharded_params + sharded_grads + opt
            return MemoryEstimate(gathered, unsharded_grads, 0, activations, logits, host)
        return MemoryEstimate(sharded_params + gathered, sharded_grads + unsharded_grads, opt, activations, logits)
    grads = trained * w * (2 if world > 1 else 1)  # DDP's buckets are as large as the gradients
    return MemoryEstimate(total * w, grads, states * trained, activations, logits)


def deepspeed_zero3_model_states(total_params: int, largest_layer_params: int, gpus: int, *, offload_optimizer: bool,
                                 offload_params: bool = False) -> int:
    """DeepSpeed's published per-GPU model-state memory under ZeRO-3 (`estimate_zero3_model_states_mem_needs`,
    one node), the number the ZeRO-3 branch of `estimate` reproduces."""
    largest = 4 * largest_layer_params
    if offload_optimizer and offload_params:
        return largest
    if offload_optimizer:
        return largest + int(2 * total_params / gpus)
    return largest + int(18 * total_params / gpus)


# --- from a recipe's stage ----------------------------------------------------------------------------

def read_shape(source: str | Path) -> ModelShape | None:
    """The shape of a model folder's config.json, a known Hub id's, or a Hub id's in the local Hub cache."""
    path = Path(str(source))
    cfg = None
    if (path / "config.json").is_file():
        cfg = json.loads((path / "config.json").read_text())
    elif str(source) in KNOWN_CONFIGS:
        cfg = KNOWN_CONFIGS[str(source)]
    else:
        try:  # a Hub id: its config.json when the Hub cache has it (nothing is downloaded)
            cached = try_to_load_from_cache(str(source), "config.json")
        except (ValueError, OSError):
            cached = None
        if isinstance(cached, str):
            cfg = json.loads(Path(cached).read_text())
    if not cfg or "hidden_size" not in cfg:
        return None
    try:
        return ModelShape.from_config(cfg)
    except (KeyError, TypeError, ValueError):
        return None
