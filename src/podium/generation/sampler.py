"""The sampler interface shared by every backend: prompts in, K completions per prompt out.

    sampler = TransformersSampler(model, tokenizer)
    out = sampler.generate(["2+2=", [{"role": "user", "content": "hi"}]], n=4,
                           params=SamplingParams(temperature=0.7, max_new_tokens=64), seed=0)
    out[1][3].text, out[1][3].mean_logp

A prompt is either a plain string (tokenised as is, with the tokenizer's usual special
tokens such as a BOS) or a list of chat messages, rendered with the tokenizer's chat
template and `add_generation_prompt=True` (no further special tokens).

Log-probs: `Completion.logp_sum` is sum_t log pi(y_t | x, y_<t) over the generated tokens
(the final EOS included when the model emitted it), where pi is the sampling model's own
softmax at temperature 1 with no top-k/top-p filtering, i.e. the number a DPO objective
would compute for this completion. It is what Rhea's SGD `below_mean_logp` selection
averages (`mean_logp = logp_sum / num_tokens`).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Protocol

from podium.data.chat import render_chat
from podium.errors import ConfigError

Message = dict
Prompt = str | list[Message]


@dataclass(frozen=True)
class SamplingParams:
    """Decoding settings; `temperature == 0` means greedy, `top_k == 0` and `top_p == 1` mean off."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 256

    def __post_init__(self):
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ConfigError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Completion:
    """One sampled continuation of one prompt.

    `token_ids` are the generated ids (EOS included when generation stopped there);
    `text` decodes them without the EOS and without special tokens; `logp_sum` and
    `num_tokens` describe the same ids (see the module docstring); `finish_reason` is
    "stop" (EOS) or "length" (hit `max_new_tokens`).
    """

    text: str
    token_ids: list[int] = field(default_factory=list)
    logp_sum: float = 0.0
    num_tokens: int = 0
    finish_reason: str = "length"

    @property
    def mean_logp(self) -> float:
        return self.logp_sum / self.num_tokens if self.num_tokens else 0.0


class Sampler(Protocol):
    """Anything that turns prompts into `n` completions each, reproducibly from `seed`."""

    def generate(
        self, prompts: list[Prompt], n: int, params: SamplingParams, seed: int = 0, indices: list[int] | None = None
    ) -> list[list[Completion]]:
        """`indices[j]`: prompt j's index in the whole prompt list (default j); seeds derive from it, so a
        shard of the prompts (one process of a distributed stage) samples what the whole list would."""
        ...


def render_prompt(tokenizer, prompt: Prompt) -> str:
    """Render a chat prompt with the tokenizer's template (generation prompt added); strings pass through."""
    if isinstance(prompt, str):
        return prompt
    if not isinstance(prompt, list) or not all(isinstance(m, dict) and "role" in m for m in prompt):
        raise ConfigError(
            f"a prompt must be a string or a list of {{'role', 'content'}} messages, got {prompt!r:.80}"
        )
    if getattr(tokenizer, "chat_template", None) is None:
        raise ConfigError("prompt is a message list but the tokenizer has no chat template")
    # transformers 5 returns a BatchEncoding unless tokenize=False.
    return render_chat(tokenizer, prompt, add_generation_prompt=True, where="prompt")


def encode_prompts(tokenizer, prompts: list[Prompt]) -> list[list[int]]:
    """Token ids of each prompt, tokenised as transformers and vLLM do.

    A plain string gets the tokenizer's usual special tokens (a Llama BOS, say); a
    rendered chat template gets none, since the template already wrote them.
    """
    out = []
    for p in prompts:
        text = render_prompt(tokenizer, p)
        out.append(list(tokenizer(text, add_special_tokens=isinstance(p, str))["input_ids"]))
    return out


def sequence_seed(seed: int, prompt_index: int, sample_index: int) -> int:
    """A 63-bit seed for sample `sample_index` of prompt `prompt_index`.

    Each sequence draws from its own stream, so its output does not depend on which
    other sequences share its batch (batch size, sorting); it does depend on the
    prompt's position in the list given to `generate`.
    """
    digest = hashlib.blake2b(f"{seed}:{prompt_index}:{sample_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)
