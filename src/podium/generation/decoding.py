"""The state of one micro-batch while `TransformersSampler` decodes it: what the next forward reads
(`DecodingStep`) and what each row has drawn so far (`DecodingRows`), with finished rows leaving the batch."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from podium.generation.sampling import token_logprobs


@dataclass
class DecodingStep:
    """What the next forward reads: the cache, the last logits `[B, V]`, the mask (None under shared-prefix
    attention), the next positions `[B]`, and the tokens just drawn `[B]`."""

    cache: object
    logits: torch.Tensor
    attn: torch.Tensor | None
    next_pos: torch.Tensor
    shared: bool
    nxt: torch.Tensor | None = None

    def keep(self, keep: torch.Tensor) -> None:
        """Keep only batch positions `keep` (finished rows dropped)."""
        self.cache.batch_select_indices(keep)
        self.next_pos, self.nxt = self.next_pos[keep], self.nxt[keep]
        self.attn = self.attn[keep] if self.attn is not None else None


@dataclass
class DecodingRows:
    """Per batch position (row `alive[b]` of the micro-batch): the tokens drawn, their log-probs and the step of
    the row's EOS (`max_new`: none yet), written a column per step; rows leave the batch when they are dropped,
    their results copied by row into `tokens`, `logps`, `stop_step`."""

    tok_b: torch.Tensor
    logp_b: torch.Tensor
    stop_b: torch.Tensor
    tokens: torch.Tensor
    logps: torch.Tensor
    stop_step: torch.Tensor
    alive: torch.Tensor  # batch position -> row
    done: torch.Tensor
    max_new: int

    @classmethod
    def start(cls, n_rows: int, max_new: int, pad_id: int, device) -> DecodingRows:
        tok_b = torch.full((n_rows, max_new), pad_id, dtype=torch.long, device=device)
        logp_b = torch.zeros((n_rows, max_new), dtype=torch.float32, device=device)
        stop_b = torch.full((n_rows,), max_new, dtype=torch.long, device=device)
        return cls(tok_b, logp_b, stop_b, torch.empty_like(tok_b), torch.empty_like(logp_b), torch.empty_like(stop_b),
                   torch.arange(n_rows, device=device), torch.zeros(n_rows, dtype=torch.bool, device=device), max_new)

    def record(self, t: int, nxt: torch.Tensor, logits: torch.Tensor, eos: torch.Tensor) -> int:
        """Write step `t`'s tokens and log-probs; mark rows that drew an EOS; returns how many rows are done."""
        self.tok_b[:, t] = nxt
        self.logp_b[:, t] = token_logprobs(logits, nxt)
        hit = torch.isin(nxt, eos) & ~self.done
        self.stop_b.masked_fill_(hit, t)
        self.done |= hit
        return int(self.done.sum())

    def settle(self, positions: torch.Tensor) -> None:
        """Copy the results of batch `positions` to their rows."""
        for out, part in ((self.tokens, self.tok_b), (self.logps, self.logp_b), (self.stop_step, self.stop_b)):
            out.index_copy_(0, self.alive[positions], part[positions])

    def drop_finished(self) -> torch.Tensor:
        """Settle the finished rows and leave them out of the batch; returns the batch positions kept."""
        keep = (~self.done).nonzero().squeeze(-1)
        self.settle(self.done.nonzero().squeeze(-1))
        self.tok_b, self.logp_b, self.stop_b = self.tok_b[keep], self.logp_b[keep], self.stop_b[keep]
        self.alive, self.done = self.alive[keep], self.done[keep]
        return keep
