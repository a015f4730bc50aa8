"""Pairwise judges: any scorer f(prompt, a, b) -> P(a ≻ b), K(K−1) comparisons per prompt.

`PairRMJudge` wraps llm-blender's PairRM (Jiang et al. 2023), the judge of the SPPO paper,
imported only when used, and turns its logits into P as the SPPO code does. `ConcatPairScorer`
turns a scalar model over the concatenated pair into a pairwise scorer (the same-size baseline of
benchmarks/judge_cost.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from podium.data.response_batches import encode_response, pad_responses
from podium.errors import PodiumError
from podium.judging.base import EMPTY, TOO_LONG, Judgement, empty_responses, matrix_from_scores
from podium.models.io import first_line


def ordered_pairs(k: int) -> list[tuple[int, int]]:
    """All (i, j) with i ≠ j, row-major: K(K−1) pairs."""
    return [(i, j) for i in range(k) for j in range(k) if i != j]


def matrix_from_pairwise(k: int, pairs: list[tuple[int, int]], probs: torch.Tensor,
                         symmetrize: bool) -> torch.Tensor:
    """Fill P from ordered-pair probabilities; symmetrize: P_ij = (f(i,j) + 1 − f(j,i))/2.

    Symmetrising removes position bias, so that P_ij + P_ji = 1 as for the other judges.
    """
    F = torch.full((k, k), 0.5)
    for (i, j), p in zip(pairs, probs.tolist()):
        F[i, j] = p
    P = (F + 1 - F.T) / 2 if symmetrize else F
    return P.fill_diagonal_(0.5)


class PairwiseJudge:
    """K(K−1) calls to `scorer(prompt, a, b) -> P(a ≻ b)` (or one call with lists when `batched`)."""

    def __init__(self, scorer: Callable, *, batched: bool = False, symmetrize: bool = True):
        self.scorer, self.batched, self.symmetrize = scorer, batched, symmetrize

    def preference_matrix(self, prompt, responses: Sequence[str]) -> Judgement:
        empty = empty_responses(responses)
        if empty:
            return Judgement.rejected(empty, EMPTY)
        k = len(responses)
        pairs = ordered_pairs(k)
        if self.batched:
            out = self.scorer(prompt, [responses[i] for i, _ in pairs], [responses[j] for _, j in pairs])
            if isinstance(out, Judgement):  # the scorer found a response it cannot score
                return out
            probs = torch.as_tensor(out, dtype=torch.float32)
        else:
            probs = torch.tensor([float(self.scorer(prompt, responses[i], responses[j])) for i, j in pairs])
        if not ((probs >= 0) & (probs <= 1)).all():
            raise ValueError(f"pairwise scorer must return probabilities in [0, 1], got {probs.tolist()}")
        return Judgement(matrix_from_pairwise(k, pairs, probs, self.symmetrize))


class ConcatPairScorer:
    """P(a ≻ b) = σ(r(x, "[A] a [B] b")) from a scalar `RewardModel`; one backbone pass per pair.

    Batched form for `PairwiseJudge(batched=True)`: scorer(prompt, list_a, list_b) -> [N].
    `batch_size` bounds the number of pair sequences per forward pass.
    """

    def __init__(self, model, tokenizer, batch_size: int = 64, max_length: int | None = None):
        self.model, self.tokenizer, self.batch_size = model.eval(), tokenizer, batch_size
        self.max_length = max_length or model.max_length

    @torch.no_grad()
    def __call__(self, prompt, list_a: Sequence[str], list_b: Sequence[str]):
        encoded = [encode_response(self.tokenizer, prompt, f"[A] {a}\n[B] {b}") for a, b in zip(list_a, list_b)]
        if self.max_length and any(len(ids) > self.max_length for ids, _ in encoded):
            return Judgement.rejected([], TOO_LONG)
        out = []
        for s in range(0, len(encoded), self.batch_size):
            chunk = encoded[s : s + self.batch_size]
            b = pad_responses(self.tokenizer.pad_token_id, [e[0] for e in chunk], [e[1] for e in chunk])
            out.append(torch.sigmoid(self.model(b["input_ids"], b["attention_mask"], b["prompt_lengths"]).float()))
        return torch.cat(out)


PAIRRM_MODES = ("sppo", "pairwise")


def last_user_text(prompt) -> str:
    """The text PairRM reads as the instruction: a string as is, else the last message's content."""
    return prompt if isinstance(prompt, str) else prompt[-1]["content"]


def import_llm_blender():
    """llm-blender, imported only when a PairRM judge is built (optional dependency)."""
    try:
        import llm_blender  # optional dependency, imported only when used
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] != "llm_blender":
            raise PodiumError(f"llm-blender is installed but its dependency {e.name!r} is missing: "
                              "pip install 'podium[pairrm]' installs llm-blender's dependencies") from None
        raise PodiumError("the pairrm judge needs llm-blender: pip install 'podium[pairrm]' "
                          "(or pip install llm-blender)") from None
    except ImportError as e:
        # llm-blender 0.0.2 (the release on PyPI) imports transformers.utils.hub.TRANSFORMERS_CACHE,
        # which transformers 5 removed.
        raise PodiumError(f"llm-blender is installed but cannot be imported ({first_line(e)}); llm-blender 0.0.2 "
                          "needs transformers < 5") from None
    return llm_blender


def check_pairrm_folder(checkpoint: str) -> None:
    """A local PairRM checkpoint is what llm-blender's `loadranker` reads: `config.json` (its ranker config,
    with `ranker_type` and `model_name`) and `model.safetensors`. A folder with only `pytorch_model.bin`
    is refused: llm-blender would unpickle it. Hub ids are left to llm-blender."""
    folder = Path(checkpoint)
    if not folder.exists():
        return
    config = folder / "config.json"
    if not config.is_file():
        raise PodiumError(f"{folder}: not a PairRM checkpoint: no config.json (llm-blender's ranker config with "
                          "fields ranker_type, model_type, model_name)")
    try:
        fields = json.loads(config.read_text())
    except (OSError, ValueError) as e:
        raise PodiumError(f"{config}: invalid JSON ({first_line(e)})") from None
    missing = [k for k in ("ranker_type", "model_name") if not (isinstance(fields, dict) and fields.get(k))]
    if missing:
        raise PodiumError(f"{config}: not a PairRM ranker config: missing field {missing[0]!r}")
    if not (folder / "model.safetensors").is_file():
        pickled = (folder / "pytorch_model.bin").is_file()
        raise PodiumError(f"{folder}: no model.safetensors" + (" (only pytorch_model.bin, a pickle that llm-blender would "
                          "unpickle; convert it to safetensors)" if pickled else ""))


class PairRMJudge:
    """llm-blender's PairRM (Jiang et al. 2023), the judge of the SPPO paper.

    PairRM reads the instruction and two candidates, the first shown as A, and gives a logit C_ij
    that candidate i beats candidate j (C_ii = 0). Two ways to turn it into P:

    - ``mode="sppo"`` (default), as the SPPO code: ``scripts/rank.py`` calls
      ``Blender.rank(prompts, candidates, return_scores=True, batch_size=1)``, whose scores are
      llm-blender's aggregate ``get_scores_from_cmps`` (policy "max_logits") of the full K x K
      comparison ``_full_predict``: s_i = mean_j (C_ij - C_ji), j over all K (self adds 0);
      ``scripts/compute_prob.py`` then sets P_ij = sigma(s_i - s_j) and ranks by s.
      K(K-1) PairRM passes per prompt.
    - ``mode="pairwise"``: P_ij = sigma(C_ij - C_ji), the logit ``Blender.compare`` returns in its
      default mode "[A,B]+[B,A]" (podium's PairRM judge before; one compare call over the K(K-1)/2
      unordered pairs, K(K-1) PairRM passes).

    The two agree when C_ij - C_ji = r_i - r_j for some r (a transitive, Bradley–Terry PairRM);
    otherwise SPPO's aggregate averages each response's K comparisons before the sigmoid.

    ``blender`` is a loaded ``llm_blender.Blender`` (built from ``checkpoint`` when None; tests pass
    a stub with ``rank`` and ``compare``). ``prompt_text(prompt) -> str`` is what PairRM reads as the
    instruction: by default the last message's text; SPPO's ``rank.py`` passes the prompt rendered
    with the policy's chat template (``podium.judging.build`` does that with ``prompt_template``).
    """

    def __init__(self, checkpoint: str = "llm-blender/PairRM", device: str | None = None, *,
                 mode: str = "sppo", blender=None, prompt_text=last_user_text):
        if mode not in PAIRRM_MODES:
            raise PodiumError(f"pairrm mode must be one of {PAIRRM_MODES}, got {mode!r}")
        if blender is None:
            check_pairrm_folder(checkpoint)
            blender = import_llm_blender().Blender()
            try:
                blender.loadranker(checkpoint, device=device)
            except (OSError, ValueError, KeyError) as e:
                raise PodiumError(f"could not load PairRM checkpoint {checkpoint!r}: {first_line(e)}") from None
        self.blender, self.mode, self.prompt_text = blender, mode, prompt_text

    def preference_matrix(self, prompt, responses: Sequence[str]) -> Judgement:
        empty = empty_responses(responses)
        if empty:
            return Judgement.rejected(empty, EMPTY)
        text, k = self.prompt_text(prompt), len(responses)
        if self.mode == "sppo":
            s = self.blender.rank([text], [list(responses)], return_scores=True, batch_size=1, disable_tqdm=True)
            s = torch.as_tensor(s, dtype=torch.float64).reshape(-1)
            if s.shape != (k,) or not torch.isfinite(s).all():
                raise ValueError(f"PairRM rank returned {s.tolist()} for {k} responses")
            return Judgement(matrix_from_scores(s).float())
        pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
        d = self.blender.compare([text] * len(pairs), [responses[i] for i, _ in pairs],
                                 [responses[j] for _, j in pairs], return_logits=True, disable_tqdm=True)
        d = torch.as_tensor(d, dtype=torch.float64).reshape(-1)
        if d.shape != (len(pairs),) or not torch.isfinite(d).all():
            raise ValueError(f"PairRM compare returned {d.tolist()} for {len(pairs)} pairs")
        L = torch.zeros(k, k, dtype=torch.float64)
        for (i, j), logit in zip(pairs, d.tolist()):
            L[i, j], L[j, i] = logit, -logit
        return Judgement(torch.sigmoid(L).fill_diagonal_(0.5).float())
