"""PairRM as a judge, natively: llm-blender's input, logits and aggregation; SPPO's use of them.

Input, as llm-blender 0.0.2's `CrossCompareCollator` and `CrossCompareReranker._forward` build it for
`Blender.rank(..., batch_size=1)` (the SPPO code's call):

- texts: source = "<|source|>" + x, candidate = "<|candidate|>" + y, each with every literal "[SEP]"
  (the tokenizer's sep token) replaced by a space, so the sequence has exactly one per segment;
- the source is tokenised with [CLS] ... [SEP] and cut to `source_max_length` (1224) tokens, each
  candidate to `candidate_max_length + (source_max_length - len(source)) // 2` = (2048 - len(source)) // 2;
- the pair (i, j) is source + candidate i + candidate j, the candidates' "<|candidate|>" marker read as
  "<|candidate1|>" and "<|candidate2|>"; padding goes after the last [SEP] and is masked.

podium reads the three marker states at their segments' first-token-after-[CLS] positions; llm-blender
finds them by token id, which is the same sequence position unless a text itself contains a marker string
(then llm-blender's own forward fails on mismatched shapes).

Every ordered pair is one cross-encoder pass (C_ij and C_ji are both computed, as `_full_predict` does); the
passes of many prompts are sorted by length and packed into forward passes of at most `max_batch_tokens`
(padded) tokens and `batch_size` pairs; DeBERTa's bucketed relative positions are built once, not per pass
(`podium.models.pairrm.PairRMModel.relative_positions`). Masked padding does not change a real token's state, so batching
changes no score beyond float rounding; identical candidate texts of one prompt share their passes.

Aggregation (`Blender.rank(..., return_scores=True)`, llm-blender's `get_scores_from_cmps`, policy
"max_logits"): s_i = mean_j (C - C^T)_ij, j over all K (the zero diagonal counted). SPPO's
`compute_prob.py`: P_ij = sigma(s_i - s_j); `mode="pairwise"`: P_ij = sigma(C_ij - C_ji), `Blender.compare`'s
logit in its default mode "[A,B]+[B,A]".
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
from tqdm.auto import tqdm

from podium.errors import PodiumError
from podium.judging.base import EMPTY, Judgement, empty_responses, matrix_from_scores
from podium.models.pairrm import MARKERS, LoadedPairRM

log = logging.getLogger("podium")

PAIRRM_MODES = ("sppo", "pairwise")


def last_user_text(prompt) -> str:
    """The text PairRM reads as the instruction by default: a string as is, else the last message's content."""
    return prompt if isinstance(prompt, str) else prompt[-1]["content"]


def aggregate_scores(C: torch.Tensor) -> torch.Tensor:
    """llm-blender's "max_logits" scores s_i = mean_j (C_ij - C_ji), j over all K. C [K, K] (zero diagonal) -> [K].

    Each row is summed in sorted order, so identical candidates (whose rows hold the same values in other
    columns) tie exactly and the first of them is chosen, as numpy's argmax picks the first of equal scores."""
    D = C - C.T
    return torch.sort(D, dim=1).values.sum(dim=1) / D.shape[1]


def pairrm_judgement(C: torch.Tensor, mode: str = "sppo") -> Judgement:
    """The Judgement of one prompt's logit matrix C [K, K] (C_ij: i shown first beats j).

    ``sppo``: P_ij = sigma(s_i - s_j) on the aggregated scores (SPPO's compute_prob.py); ``pairwise``:
    P_ij = sigma(C_ij - C_ji). `scores` holds the logits L_ij = log(P_ij / P_ji), whose row means rank the
    responses (for ``sppo`` they are s itself: s sums to zero), and `response_scores` the aggregated s.
    """
    C = C.double()
    s = aggregate_scores(C)
    if mode == "sppo":
        L = s[:, None] - s[None, :]
        P = matrix_from_scores(s)
    elif mode == "pairwise":
        L = C - C.T
        P = torch.sigmoid(L).fill_diagonal_(0.5)
    else:
        raise PodiumError(f"pairrm mode must be one of {PAIRRM_MODES}, got {mode!r}")
    return Judgement(P.float(), scores=L, response_scores=s)


class PairRMEncoder:
    """Token ids of sources and candidates exactly as llm-blender's collator makes them."""

    def __init__(self, pairrm: LoadedPairRM):
        self.tok, self.sep_text = pairrm.tokenizer, pairrm.sep_token
        self.cls, self.sep = pairrm.special_ids["cls"], pairrm.special_ids["sep"]
        self.source_max = pairrm.settings.source_max_length
        self.candidate_max = pairrm.settings.candidate_max_length
        self.cand1, self.cand2 = pairrm.marker_ids["cand1"], pairrm.marker_ids["cand2"]
        probe = self.tok.encode("x")
        content = self.tok.encode("x", add_special_tokens=False)
        if probe.ids != [self.cls, *content.ids, self.sep]:
            raise PodiumError("PairRM's tokenizer does not write [CLS] text [SEP] around a text (its post-processor)")

    def _content(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tok.encode_batch(texts, add_special_tokens=False)]

    def segments(self, text: str, candidates: Sequence[str]) -> tuple[list[int], list[list[int]]]:
        """(source ids, candidate ids with the "<|candidate|>" marker), cut as llm-blender cuts them."""
        texts = [MARKERS["source"] + text] + [MARKERS["cand"] + c for c in candidates]
        content = self._content([t.replace(self.sep_text, " ") for t in texts])
        source = [self.cls, *content[0][: self.source_max - 2], self.sep]
        cand_max = self.candidate_max + (self.source_max - len(source)) // 2
        cands = [[self.cls, *ids[: cand_max - 2], self.sep] for ids in content[1:]]
        return source, cands

    def pair(self, source: list[int], a: list[int], b: list[int]) -> tuple[list[int], tuple[int, int, int]]:
        """The pair sequence (a shown first) and the positions of its three markers."""
        a, b = list(a), list(b)
        a[1], b[1] = self.cand1, self.cand2
        return source + a + b, (1, len(source) + 1, len(source) + len(a) + 1)


class PairRMJudge:
    """PairRM (Jiang et al. 2023), the judge of the SPPO paper (Wu et al. 2024, arXiv:2405.00675), natively.

    ``mode="sppo"`` (default) is the SPPO code's use (`scripts/rank.py` calls `Blender.rank(prompts,
    candidates, return_scores=True, batch_size=1)`; `compute_prob.py` sets P_ij = sigma(s_i - s_j) and
    picks chosen = argmax s, rejected = argmin s); ``mode="pairwise"`` is P_ij = sigma(C_ij - C_ji).
    ``prompt_text(prompt) -> str`` is what PairRM reads as the instruction (default: the last message;
    `podium.judging.build` renders it with the policy's chat template as rank.py does).
    ``batch_size`` bounds the pair sequences of one forward pass, ``max_batch_tokens`` their padded tokens (default
    16384 on CUDA, 2048 on a CPU, where larger passes measured slower: benchmarks/judge_cost.py --pairrm).
    """

    def __init__(self, pairrm: LoadedPairRM, *, mode: str = "sppo", prompt_text: Callable = last_user_text,
                 batch_size: int = 64, max_batch_tokens: int | None = None, progress: bool = False):
        if mode not in PAIRRM_MODES:
            raise PodiumError(f"pairrm mode must be one of {PAIRRM_MODES}, got {mode!r}")
        self.pairrm, self.mode, self.prompt_text = pairrm, mode, prompt_text
        self.encoder = PairRMEncoder(pairrm)
        if max_batch_tokens is None:  # a GPU wants large passes; on a CPU DeBERTa's T x T attention tensors must stay small
            max_batch_tokens = 16384 if pairrm.device.type == "cuda" else 2048
        self.batch_size, self.max_batch_tokens, self.progress = batch_size, max_batch_tokens, progress
        self.pad = pairrm.special_ids["pad"]

    def preference_matrix(self, prompt, responses: Sequence[str]) -> Judgement:
        return self.judge_many([(prompt, responses)])[0]

    def judge_many(self, items: Sequence[tuple]) -> list[Judgement]:
        """One Judgement per (prompt, responses), the pairs of all prompts batched together."""
        out = []
        for (_, responses), C in zip(items, self.logit_matrices(items)):
            empty = empty_responses(responses)
            out.append(Judgement.rejected(empty, EMPTY) if empty else pairrm_judgement(C, self.mode))
        return out

    def logit_matrices(self, items: Sequence[tuple]) -> list[torch.Tensor | None]:
        """C [K, K] (float64 of the float32 logits, zero diagonal) per (prompt, responses); None for a prompt with
        an empty response."""
        jobs = []  # (item, unique candidate a, unique candidate b, pair sequence, marker positions)
        uniques: dict[int, list[int]] = {}
        for n, (prompt, responses) in enumerate(items):
            if empty_responses(responses):
                continue
            texts = list(dict.fromkeys(responses))  # identical candidates share their passes
            uniques[n] = [texts.index(r) for r in responses]
            repeated = {a for a in uniques[n] if uniques[n].count(a) > 1}
            source, cands = self.encoder.segments(self.prompt_text(prompt), texts)
            for a in range(len(texts)):
                for b in range(len(texts)):
                    if a == b and a not in repeated:
                        continue  # C_ii is never run; a repeated text's C_ij (i != j) is this pass
                    seq, markers = self.encoder.pair(source, cands[a], cands[b])
                    jobs.append((n, a, b, seq, markers))
        logits = self.logits([(seq, markers) for *_, seq, markers in jobs])
        unique_C = {n: torch.zeros(max(idx) + 1, max(idx) + 1, dtype=torch.float64) for n, idx in uniques.items()}
        for (n, a, b, *_), c in zip(jobs, logits.tolist()):
            unique_C[n][a, b] = c
        out: list[torch.Tensor | None] = [None] * len(items)
        for n, idx in uniques.items():
            index = torch.tensor(idx)
            C = unique_C[n][index][:, index].clone()
            out[n] = C.fill_diagonal_(0.0)  # _full_predict leaves C_ii = 0 (a candidate against itself is never run)
        return out

    @torch.inference_mode()
    def logits(self, pairs: list[tuple[list[int], tuple[int, int, int]]]) -> torch.Tensor:
        """C for each (pair sequence, marker positions), float32 [N]; sequences sorted by length and packed."""
        out = torch.empty(len(pairs), dtype=torch.float32)
        order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]))
        model, device = self.pairrm.model, self.pairrm.device
        bar = tqdm(total=len(pairs), desc="PairRM", unit="pair", dynamic_ncols=True, disable=not self.progress)
        start = 0
        while start < len(order):
            end = start + 1
            while (end < len(order) and end - start < self.batch_size
                   and (end - start + 1) * len(pairs[order[end]][0]) <= self.max_batch_tokens):
                end += 1
            chunk = order[start:end]
            width = len(pairs[chunk[-1]][0])
            ids = torch.full((len(chunk), width), self.pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            markers = torch.tensor([pairs[i][1] for i in chunk], dtype=torch.long)
            for row, i in enumerate(chunk):
                seq = pairs[i][0]
                ids[row, : len(seq)] = torch.tensor(seq)
                mask[row, : len(seq)] = 1
            c = model(ids.to(device), mask.to(device), markers.to(device))
            out[torch.tensor(chunk)] = c.float().cpu()
            bar.update(len(chunk))
            start = end
        bar.close()
        return out
