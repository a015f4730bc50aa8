"""Log-likelihood multiple choice: `acc` and `acc_norm` exactly as lm-eval computes them.

For a question with context c and choices a_1..a_n, the model scores each choice by the
summed log-probability of its tokens, log p(delimiter + a_i | c) (lm-eval's
`target_delimiter`, a space by default). Then (lm-eval `ConfigurableTask.process_results`):

- `acc`       = [argmax_i ll_i == gold]
- `acc_norm`  = [argmax_i ll_i / len(a_i) == gold], len in characters of the choice text
  without the delimiter. lm-eval's docs call this "byte-length normalisation"; its code
  divides by `len(str)`, which equals the UTF-8 byte length for ASCII. We follow the code.
- `acc_bytes` = [argmax_i ll_i / len(a_i.encode("utf-8")) == gold] (lm-eval's true byte variant).

Tokenisation follows lm-eval's `_encode_pair`: trailing spaces of the context move to the
continuation, the whole string is encoded once and the continuation tokens are the part
after the encoded context. Ties in argmax go to the first choice (numpy semantics).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class MultipleChoiceDoc:
    """One question: the prompt text, the choice strings and the index of the correct one."""

    context: str
    choices: list[str]
    gold: int


def choice_metrics(lls: list[float], choices: list[str], gold: int) -> dict[str, float]:
    """acc, acc_norm and acc_bytes for one question from the per-choice log-likelihoods `lls` [n]."""
    if len(lls) != len(choices):
        raise ValueError(f"{len(lls)} log-likelihoods for {len(choices)} choices")
    ll = torch.tensor(lls, dtype=torch.float64)
    chars = torch.tensor([float(len(c)) for c in choices], dtype=torch.float64)
    nbytes = torch.tensor([float(len(c.encode("utf-8"))) for c in choices], dtype=torch.float64)
    # torch.argmax returns the first maximal index, like np.argmax.
    return {
        "acc": float(int(torch.argmax(ll)) == gold),
        "acc_norm": float(int(torch.argmax(ll / chars)) == gold),
        "acc_bytes": float(int(torch.argmax(ll / nbytes)) == gold),
    }


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids of (context, continuation) split the way lm-eval's causal `_encode_pair` does.

    An empty context becomes the prefix token (BOS, else EOS), as in lm-eval's `loglikelihood`.
    """
    if context == "":
        prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        return [prefix], tokenizer.encode(continuation)
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tokenizer.encode(context + continuation)
    context_ids = tokenizer.encode(context)
    return context_ids, whole[len(context_ids):]


@torch.no_grad()
def continuation_loglikelihood(model, context_ids: list[int], continuation_ids: list[int]) -> tuple[float, bool]:
    """Summed log p(continuation | context) and whether every continuation token is the greedy one.

    Like lm-eval, the input is (context + continuation)[:-1] and the continuation's log-probs
    are read from the last len(continuation) positions; the context is cut from the left if
    the sequence exceeds the model's maximum length.
    """
    max_len = getattr(model.config, "max_position_embeddings", None) or 2048
    ids = (context_ids + continuation_ids)[-(max_len + 1):][:-1]
    device = next(model.parameters()).device
    logits = model(torch.tensor([ids], device=device)).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)[-len(continuation_ids):]  # [C, V]
    target = torch.tensor(continuation_ids, device=device)
    ll = logprobs.gather(-1, target[:, None]).squeeze(-1).sum()
    greedy = bool((logprobs.argmax(-1) == target).all())
    return float(ll), greedy


def evaluate_multiple_choice(
    model, tokenizer, docs: list[MultipleChoiceDoc], target_delimiter: str = " "
) -> dict[str, float]:
    """Mean acc, acc_norm and acc_bytes over `docs` (lm-eval's multiple_choice output type)."""
    if not docs:
        raise ValueError("no multiple-choice documents to evaluate")
    model.eval()
    totals = {"acc": 0.0, "acc_norm": 0.0, "acc_bytes": 0.0}
    for doc in docs:
        lls = [
            continuation_loglikelihood(model, *encode_pair(tokenizer, doc.context, target_delimiter + c))[0]
            for c in doc.choices
        ]
        for k, v in choice_metrics(lls, doc.choices, doc.gold).items():
            totals[k] += v
    return {k: v / len(docs) for k, v in totals.items()}
