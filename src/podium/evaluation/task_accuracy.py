"""Accuracy on built-in verifiable tasks: batched greedy generation, and sampled pass@k."""

from __future__ import annotations

from math import comb

import torch
from tqdm.auto import tqdm

from podium.data.chat import prompt_text
from podium.data.rendering import chat_prompt
from podium.models.io import check_vocab, generation_budget
from podium.tasks import get_task


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al., 2021, eq. 1)."""
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


@torch.no_grad()
def generate_texts(model, tokenizer, prompts: list, *, max_new_tokens: int = 32, batch_size: int = 64,
                   temperature: float = 0.0, num_samples: int = 1, seed: int = 0, progress=None) -> list[list[str]]:
    """Completions for each prompt (message lists get the chat template, strings are read as they are; the
    callers render prompts with podium.data.rendering.chat_prompt); [len(prompts)][num_samples]."""
    check_vocab(model, tokenizer)
    texts = [prompt_text(tokenizer, p) for p in prompts]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # less padding per batch
    out: list[list[str]] = [[] for _ in texts]
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    model.eval()
    torch.manual_seed(seed)
    try:
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            enc = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
            enc = {k: v.to(model.device) for k, v in enc.items()}
            budget = generation_budget(model, max_new_tokens, enc["input_ids"].shape[1], "eval")
            gen = model.generate(
                **enc, max_new_tokens=budget, do_sample=temperature > 0,
                temperature=temperature if temperature > 0 else None, top_p=None, top_k=None,
                num_return_sequences=num_samples, pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            new = gen[:, enc["input_ids"].shape[1]:]
            decoded = tokenizer.batch_decode(new, skip_special_tokens=True)
            for j, i in enumerate(idx):
                out[i] = decoded[j * num_samples : (j + 1) * num_samples]
            if progress:
                progress(len(idx))
    finally:
        tokenizer.padding_side = side
    return out


def task_accuracy(model, tokenizer, items: list[dict], *, max_new_tokens: int = 32, batch_size: int = 64,
                  pass_k: int | None = None, num_samples: int | None = None, temperature: float = 0.8,
                  seed: int = 0, show_progress: bool = False) -> dict[str, float]:
    """`accuracy/<task>` (greedy) and, with pass_k, `pass@k/<task>` from sampled completions."""
    bar = None
    if show_progress:
        bar = tqdm(total=len(items), desc="eval", unit="prompt", dynamic_ncols=True)
    prompts = [chat_prompt(it, tokenizer, "eval") for it in items]  # the one rendering rule
    greedy = generate_texts(model, tokenizer, prompts, max_new_tokens=max_new_tokens,
                            batch_size=batch_size, progress=bar.update if bar else None)
    if bar:
        bar.close()
    by_task: dict[str, list[bool]] = {}
    for it, resp in zip(items, greedy):
        by_task.setdefault(it["task"], []).append(get_task(it["task"]).check(resp[0], it["answer"]))
    metrics = {f"accuracy/{t}": sum(v) / len(v) for t, v in by_task.items()}
    if pass_k:
        n = num_samples or 2 * pass_k
        sampled = generate_texts(model, tokenizer, prompts, max_new_tokens=max_new_tokens,
                                 batch_size=max(1, batch_size // n), temperature=temperature, num_samples=n, seed=seed)
        per_task: dict[str, list[float]] = {}
        for it, resps in zip(items, sampled):
            c = sum(get_task(it["task"]).check(r, it["answer"]) for r in resps)
            per_task.setdefault(it["task"], []).append(pass_at_k(n, c, pass_k))
        metrics.update({f"pass@{pass_k}/{t}": sum(v) / len(v) for t, v in per_task.items()})
    metrics["accuracy"] = sum(sum(v) for v in by_task.values()) / max(1, sum(len(v) for v in by_task.values()))
    return metrics
