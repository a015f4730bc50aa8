"""How B tokenised preference pairs are laid out for the forward(s) that score them (`pack_pairs`).

A batch of B pairs is laid out in one of these ways (`pack_pairs`), which give the same log-probs
up to float rounding (tested):

- plain (TRL's layout): 2B right-padded rows, `[prompt, chosen]` then `[prompt, rejected]`.
- prefix sharing: the prompt is computed once per pair instead of twice. Two forwards: the B
  prompts but their last token (left-padded) fill a KV cache, the cache is repeated for each pair's
  two completions, and the 2B rows `[last prompt token, completion]` (right-padded) run against it (as
  generation continues a prefilled prompt). No logit comes from the first forward, so its last layer
  computes only keys and values where the architecture allows (`podium.training.prompt_pass`).
  Gradients flow through the cache into the prompt's forward. transformers builds every mask
  itself from the 2D padding masks (sliding windows, per-layer-type attention, soft-capping
  included), and attention covers only what is visible: the prompt with itself, each completion
  with its prompt and itself. (A pair whose prompt is empty falls back to the next layout.)
- prefix sharing in one row per pair `[prompt, chosen, rejected]`: a prepared 4D mask lets rejected
  tokens attend to the prompt but not to chosen, and positions restart at `len(prompt)` for rejected;
  the mask is `[R, L, L]` and attention computes every query-key pair of a row, masked or not.
- padding-free: all sequences of the batch in ONE row, positions restarting at 0 for each; with
  prefix sharing the packed units are `[prompt, chosen, rejected]` with a block-diagonal 4D mask,
  without it transformers derives the block-causal mask from the position resets.

Which layouts are exact for a model: `podium.training.attention_masks`; the forwards over them and the log-probs:
`podium.training.logps`.
"""

from __future__ import annotations

import torch

PROMPT, CHOSEN, REJECTED = 0, 1, 2


def _units(ex: dict, prefix_sharing: bool) -> list[list[tuple[int, int, int]]]:
    """Token triples (token_id, branch, position) of the units one pair occupies."""
    p, c, r = ex["prompt_ids"], ex["chosen_ids"], ex["rejected_ids"]
    prompt = [(t, PROMPT, i) for i, t in enumerate(p)]
    chosen = [(t, CHOSEN, len(p) + i) for i, t in enumerate(c)]
    rejected = [(t, REJECTED, len(p) + i) for i, t in enumerate(r)]
    if prefix_sharing:
        return [prompt + chosen + rejected]
    return [prompt + chosen, prompt + rejected]


def _router_weight(branch: int, first_unit: bool, prefix_sharing: bool, unpaired: bool) -> float:
    """How many rows of TRL's padded layout a token stands for in its router loss (`token_weight`)."""
    if unpaired:  # TRL's main forward holds the prompt and the completion once; the KL forward adds nothing
        return 0.0 if branch == REJECTED or not first_unit else 1.0
    return 2.0 if prefix_sharing and branch == PROMPT else 1.0


def pack_pairs(examples: list[dict], pad_token_id: int, *, prefix_sharing: bool = False,
               padding_free: bool = False, with_prompt: bool = False, unpaired: bool = False) -> dict:
    """Lay out B tokenised pairs (see module doc); prefix sharing without padding-free is `pack_prompt_cache`.

    With `with_prompt`, each prompt's own tokens after its first are targets too, segment 2B + i (once per
    pair, as in TRL's chosen row: ORPO's NLL covers prompt and chosen response). With `unpaired` (KTO: the
    rejected slot holds a KL completion, which TRL runs in a separate forward that adds no router loss) the
    router-loss weights count a prompt once and the rejected slot not at all.

    Returns `input_ids`, `position_ids` `[R, L]`, `attention_mask` (`[R, L]` plain, else None),
    `shared_mask` (`[R, L, L]` bool, prefix sharing only), `pred_mask` `[R, L]` (positions whose
    next-token logits are needed), `target_pred` `[M]` (index of each completion token's predicting
    position among the True entries of `pred_mask`, row-major), `target_ids` `[M]`, `target_seg`
    `[M]` (i for chosen of pair i, B + i for rejected), `num_tokens` (non-pad input tokens), `token_mask`
    `[R, L]` (True on them),
    `token_weight` `[R, L]` (how many of TRL's padded rows each token stands for: 2 for a shared
    prompt token, 1 for other tokens, 0 for padding; it weights the MoE router loss).
    """
    if prefix_sharing and not padding_free and all(ex["prompt_ids"] for ex in examples):
        return pack_prompt_cache(examples, pad_token_id, with_prompt=with_prompt, unpaired=unpaired)
    B = len(examples)
    rows = _rows_of_units(examples, prefix_sharing, padding_free)
    L = max(sum(len(u) for u, _, _ in row) for row in rows)
    R = len(rows)
    ids_rows, pos_rows, unit_rows, branch_rows, weight_rows, targets = _lay_out(
        rows, B, L, pad_token_id, prefix_sharing=prefix_sharing, with_prompt=with_prompt, unpaired=unpaired)
    input_ids = torch.tensor(ids_rows, dtype=torch.long)
    position_ids = torch.tensor(pos_rows, dtype=torch.long)
    unit_id = torch.tensor(unit_rows, dtype=torch.long)
    branch = torch.tensor(branch_rows, dtype=torch.long)
    pred_mask = torch.zeros((R, L), dtype=torch.bool)
    rr = torch.tensor([t[0] for t in targets], dtype=torch.long)
    cc = torch.tensor([t[1] for t in targets], dtype=torch.long)
    pred_mask[rr, cc] = True
    rank = pred_mask.flatten().cumsum(0) - 1
    batch = {
        "input_ids": input_ids,
        "position_ids": position_ids,
        "attention_mask": None,
        "shared_mask": None,
        "pred_mask": pred_mask,
        "target_pred": rank[rr * L + cc],
        "target_ids": torch.tensor([t[2] for t in targets], dtype=torch.long),
        "target_seg": torch.tensor([t[3] for t in targets], dtype=torch.long),
        "num_tokens": int((unit_id >= 0).sum()),
        "token_mask": unit_id >= 0,
        "token_weight": torch.tensor(weight_rows, dtype=torch.float32),
        "n_pairs": B,
    }
    if prefix_sharing:
        same_unit = unit_id[:, :, None] == unit_id[:, None, :]
        causal = torch.ones(L, L, dtype=torch.bool).tril()
        bq, bk = branch[:, :, None], branch[:, None, :]
        visible = (bk == PROMPT) | (bk == bq)
        # Sliding windows and padding rows are added per model (attention_masks.prepared_masks).
        batch["shared_mask"] = same_unit & causal & visible & (unit_id[:, :, None] >= 0)
    elif not padding_free:
        batch["attention_mask"] = (unit_id >= 0).long()
    return batch


def _rows_of_units(examples: list[dict], prefix_sharing: bool, padding_free: bool) -> list[list[tuple]]:
    """The rows of the batch, each a list of (unit tokens, pair index, whether it is the pair's first unit:
    the one holding chosen); one row per unit, or all units in one row (padding-free)."""
    units = []
    for i, ex in enumerate(examples):
        for k, u in enumerate(_units(ex, prefix_sharing)):
            units.append((u, i, k == 0))
    if not prefix_sharing:  # TRL order: all chosen rows, then all rejected rows
        units = units[0::2] + units[1::2]
    return [units] if padding_free else [[unit] for unit in units]


def _lay_out(rows: list[list[tuple]], B: int, L: int, pad_token_id: int, *, prefix_sharing: bool,
             with_prompt: bool, unpaired: bool):
    """Per row, right-padded to L: token ids, positions, unit ids (-1: padding), branches, router weights; and the
    targets (row, predicting column, token id, segment) of every completion token (and prompt token with
    `with_prompt`) that has a predictor."""
    ids_rows, pos_rows, unit_rows, branch_rows, weight_rows = [], [], [], [], []
    targets = []  # (row, predictor col, token id, segment)
    uid = 0
    for r, row in enumerate(rows):
        ids, pos, units, branches, weights = [], [], [], [], []
        for u, i, first in row:
            weights += [_router_weight(b, first, prefix_sharing, unpaired) for _, b, _ in u]
            last = {}  # branch -> column of the latest token in the unit visible to that branch
            for t, b, p in u:
                col = len(ids)
                if b != PROMPT:
                    prev = last.get(b, last.get(PROMPT))
                    if prev is not None:  # a completion at position 0 has no predictor (TRL shifts it out)
                        targets.append((r, prev, t, i if b == CHOSEN else B + i))
                elif with_prompt and first and PROMPT in last:
                    targets.append((r, last[PROMPT], t, 2 * B + i))
                last[b] = col
                ids.append(t)
                pos.append(p)
                units.append(uid)
                branches.append(b)
            uid += 1
        pad = L - len(ids)
        weight_rows.append(weights + [0.0] * pad)
        ids_rows.append(ids + [pad_token_id] * pad)
        pos_rows.append(pos + [0] * pad)
        unit_rows.append(units + [-1] * pad)
        branch_rows.append(branches + [0] * pad)
    return ids_rows, pos_rows, unit_rows, branch_rows, weight_rows, targets


# 65 lines, of which the docstring (the layout's specification) is 20.
def pack_prompt_cache(examples: list[dict], pad_token_id: int, *, with_prompt: bool = False,
                      unpaired: bool = False) -> dict:
    """The prefix-sharing layout of two forwards (module doc) for B pairs with non-empty prompts.

    The first forward runs each prompt but its last token (left-padded, `[B, P]`, P = longest prompt - 1;
    it only fills the KV cache), the second the 2B rows `[last prompt token, completion]` (right-padded,
    `[2B, C]`; row 2i chosen of pair i, 2i + 1 rejected) against it. Every logit kept comes from the second
    forward, so the first forward's last layer need compute only its keys and values (`prompt_pass`).
    Returns `prompt_ids`, `prompt_mask`, `prompt_positions` `[B, P]`, `completion_ids`, `completion_mask`,
    `completion_positions` `[2B, C]`, `cache_mask` `[2B, P + C]` (the second forward's 2D mask),
    `completion_pred` `[2B, C]` (positions whose logits are kept), `target_pred` `[M]` (index of each
    completion token's predicting row among the kept logits), `target_ids`, `target_seg` `[M]` (as
    `pack_pairs`), `num_tokens`, `token_positions` (position of every token the forwards run, for the
    FLOP count), `logit_rows`, and the router-loss weights `prompt_weight` (2: a prompt token stands for
    two TRL rows) and `completion_weight` (the last prompt token runs in both rows, so it counts twice too).
    With `with_prompt` the first forward also keeps its logits (`prompt_pred` `[B, P]`: every position predicts
    the next prompt token) and the prompt's tokens after the first are targets of segment 2B + i; kept logits
    are ordered first forward, then second. `unpaired`: router-loss weights as `pack_pairs` gives them.
    """
    B = len(examples)
    prompts = [ex["prompt_ids"] for ex in examples]
    completions = [c for ex in examples for c in (ex["chosen_ids"], ex["rejected_ids"])]
    P = max(map(len, prompts)) - 1
    C = 1 + max(map(len, completions))
    prompt_ids = torch.full((B, P), pad_token_id, dtype=torch.long)
    prompt_mask = torch.zeros((B, P), dtype=torch.long)
    for i, p in enumerate(prompts):
        if len(p) > 1:
            prompt_ids[i, P - len(p) + 1:] = torch.tensor(p[:-1], dtype=torch.long)
            prompt_mask[i, P - len(p) + 1:] = 1
    completion_ids = torch.full((2 * B, C), pad_token_id, dtype=torch.long)
    completion_mask = torch.zeros((2 * B, C), dtype=torch.long)
    for r, c in enumerate(completions):
        completion_ids[r, :1 + len(c)] = torch.tensor([prompts[r // 2][-1], *c], dtype=torch.long)
        completion_mask[r, :1 + len(c)] = 1
    lengths = torch.tensor([len(p) for p in prompts]).repeat_interleave(2)
    completion_positions = lengths[:, None] - 1 + torch.arange(C)
    # Completion token j is predicted at row position j (the last prompt token predicts token 0).
    completion_pred = torch.zeros((2 * B, C), dtype=torch.bool)
    completion_pred[:, :-1] = completion_mask[:, 1:].bool()
    n_prompt = int(prompt_mask.sum()) if with_prompt else 0
    rank = completion_pred.flatten().cumsum(0).view(2 * B, C) - 1 + n_prompt
    target_pred, target_ids, target_seg = _prompt_cache_targets(prompts, completions, prompt_mask, rank, with_prompt)
    prompt_positions = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
    extra = {"prompt_pred": prompt_mask.bool()} if with_prompt else {}
    return {**extra,
        "layout": "prompt_cache", "n_pairs": B,
        "prompt_ids": prompt_ids, "prompt_mask": prompt_mask, "prompt_positions": prompt_positions,
        "completion_ids": completion_ids, "completion_mask": completion_mask,
        "completion_positions": completion_positions,
        "cache_mask": torch.cat([prompt_mask.repeat_interleave(2, dim=0), completion_mask], dim=1),
        "completion_pred": completion_pred,
        "target_pred": torch.tensor(target_pred, dtype=torch.long),
        "target_ids": torch.tensor(target_ids, dtype=torch.long),
        "target_seg": torch.tensor(target_seg, dtype=torch.long),
        "num_tokens": int(prompt_mask.sum() + completion_mask.sum()),
        "token_positions": torch.cat([prompt_positions[prompt_mask.bool()],
                                      completion_positions[completion_mask.bool()]]),
        "logit_rows": int(completion_pred.sum()) + n_prompt,
        # the first entries of `token_positions`, whose last layer computes keys and values only (none: with_prompt)
        "prompt_tokens": 0 if with_prompt else int(prompt_mask.sum()),
        "prompt_weight": (1.0 if unpaired else 2.0) * prompt_mask.float(),
        "completion_weight": completion_mask.float() * (torch.arange(2 * B) % 2 == 0)[:, None] if unpaired
        else completion_mask.float(),
    }


def _prompt_cache_targets(prompts: list[list[int]], completions: list[list[int]], prompt_mask: torch.Tensor,
                          rank: torch.Tensor, with_prompt: bool) -> tuple[list[int], list[int], list[int]]:
    """(target_pred, target_ids, target_seg) of the prompt-cache layout: with `with_prompt` first the prompts'
    tokens after their first (segment 2B + i), then every completion token (i chosen, B + i rejected)."""
    B, P = prompt_mask.shape
    target_pred, target_ids, target_seg = [], [], []
    if with_prompt:  # prompt token j (j >= 1) is predicted at the first forward's position of token j - 1
        prompt_rank = prompt_mask.flatten().cumsum(0).view(B, P) - 1
        for i, p in enumerate(prompts):
            target_pred += prompt_rank[i, P - len(p) + 1:].tolist()
            target_ids += p[1:]
            target_seg += [2 * B + i] * (len(p) - 1)
    for r, c in enumerate(completions):
        pair, seg = divmod(r, 2)
        target_pred += rank[r, :len(c)].tolist()
        target_ids += c
        target_seg += [pair if seg == 0 else B + pair] * len(c)
    return target_pred, target_ids, target_seg
