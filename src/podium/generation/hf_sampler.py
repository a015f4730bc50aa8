"""Transformers backend: a batched decoding loop over `model.forward` with a KV cache.

Why not `model.generate`: one loop of our own lets every sequence draw from its own
seeded random stream (outputs do not depend on batch size or on the other prompts in
the batch), records the model's log-prob of each sampled token on the way, drops
finished sequences from the batch, and prefills a prompt once for its K samples. Where it is
exact for the model (`podium.generation.shared_prefix.applicable`) the K samples also keep one
copy of the prompt's keys and values and read it once per step (shared-prefix attention);
elsewhere the prompt's cache is copied to each of its K rows.
On small models on CPU it is also much faster than a per-prompt `generate` loop
(benchmarks/generate.py).

Batching: sequences (prompt i, sample k) are sorted by prompt length and cut into
micro-batches of `batch_size` sequences. Prompts are LEFT padded, position ids count
only real tokens, so a padded row computes what it would compute alone.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import replace

import torch
from tqdm.auto import tqdm
from transformers import DynamicCache

from podium.generation.kv_cache import preallocated_cache
from podium.generation.lean_decode import LeanDecoder, lean_applicable
from podium.generation.sampler import Completion, Prompt, SamplingParams, encode_prompts, sequence_seed
from podium.generation.sampling import select_next_tokens, token_logprobs
from podium.generation.shared_prefix import SharedPrefixCache, applicable, decoding_with
from podium.models.io import check_vocab, generation_budget
from podium.training.attention_masks import cache_argument

# Finished rows are dropped from the batch once they are 1/DROP_EVERY of it: dropping copies the cache of the
# rows kept, keeping them costs their share of every step's cache read.
DROP_EVERY = 8


def eos_token_ids(model, tokenizer) -> list[int]:
    """EOS ids from the generation config (int or list) and the tokenizer, deduplicated."""
    ids: list[int] = []
    for source in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if source is None:
            continue
        for i in source if isinstance(source, (list, tuple)) else [source]:
            if int(i) not in ids:
                ids.append(int(i))
    return ids


class TransformersSampler:
    """Sample from a transformers causal LM with batched KV-cached decoding (CPU or GPU).

    `batch_size` counts sequences (prompts x samples) decoded together; `progress`
    shows a tqdm bar over sequences. `lean` decodes with `podium.generation.lean_decode` where it
    applies (the model's own forward otherwise, and with `lean=False`).
    """

    backend = "transformers"

    def __init__(self, model, tokenizer, *, batch_size: int = 32, progress: bool = False, lean: bool = True):
        self.model = model
        self.lean = lean
        self.cache_kwarg = cache_argument(model)
        self.tokenizer = tokenizer
        check_vocab(model, tokenizer)  # a token id past the embedding would fail deep inside the first forward
        self.batch_size = max(1, int(batch_size))
        self.progress = progress
        self.eos_ids = eos_token_ids(model, tokenizer)
        if not self.eos_ids:
            raise ValueError("the tokenizer and generation config define no EOS token")
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else self.eos_ids[0])

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def generate(
        self, prompts: list[Prompt], n: int, params: SamplingParams, seed: int = 0, indices: list[int] | None = None
    ) -> list[list[Completion]]:
        """`n` completions for each prompt, in prompt order; see `podium.generation.sampler` (`indices` too)."""
        seed_index = list(range(len(prompts))) if indices is None else list(indices)
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        prompt_ids = encode_prompts(self.tokenizer, prompts)
        for i, ids in enumerate(prompt_ids):
            if not ids:
                raise ValueError(f"prompt {i} is empty after tokenisation")
        # Greedy samples are identical: decode one per prompt and copy it.
        samples = 1 if params.greedy else n
        rows = sorted(
            ((i, k) for i in range(len(prompts)) for k in range(samples)),
            key=lambda r: (len(prompt_ids[r[0]]), r[0], r[1]),
        )
        results: dict[tuple[int, int], Completion] = {}
        bar = _progress_bar(len(rows), self.progress)
        was_training = self.model.training
        self.model.eval()  # no dropout while sampling; the caller's mode is restored below
        lean = LeanDecoder(self.model) if self.lean and lean_applicable(self.model) else None
        try:
            with bar:
                for start in range(0, len(rows), self.batch_size):
                    chunk = rows[start : start + self.batch_size]
                    for row, completion in zip(chunk, self._decode(chunk, prompt_ids, params, seed, seed_index, lean)):
                        results[row] = completion
                    if hasattr(bar, "update"):
                        bar.update(len(chunk))
        finally:
            self.model.train(was_training)
        if params.greedy:
            return [[_copy(results[(i, 0)]) for _ in range(n)] for i in range(len(prompts))]
        return [[results[(i, k)] for k in range(n)] for i in range(len(prompts))]

    @torch.inference_mode()
    def _decode(
        self, rows: list[tuple[int, int]], prompt_ids: list[list[int]], params: SamplingParams, seed: int,
        seed_index: list[int], lean: LeanDecoder | None = None,
    ) -> list[Completion]:
        """Decode one micro-batch of (prompt index, sample index) rows; prompt i seeds as `seed_index[i]`."""
        device = self.device
        unique = list(dict.fromkeys(i for i, _ in rows))
        slot = {i: s for s, i in enumerate(unique)}
        width = max(len(prompt_ids[i]) for i in unique)
        ids = torch.full((len(unique), width), self.pad_id, dtype=torch.long)
        attn = torch.zeros((len(unique), width), dtype=torch.long)
        for s, i in enumerate(unique):
            p = prompt_ids[i]
            ids[s, width - len(p) :] = torch.tensor(p)
            attn[s, width - len(p) :] = 1
        ids, attn = ids.to(device), attn.to(device)
        positions = (attn.cumsum(-1) - 1).clamp_(min=0)
        # Never past the model's positions (nor a cache reserved for more tokens than it can hold).
        max_new = generation_budget(self.model, params.max_new_tokens, width)

        # Prefill each distinct prompt once; then either keep one copy of its cache for its K rows
        # (shared-prefix attention) or fan the cache out to them.
        config = self.model.config
        shared = applicable(config) and config._attn_implementation in ("sdpa", "eager")
        cache = DynamicCache(config=config) if shared else preallocated_cache(config, reserve=max_new)
        out = self.model(
            input_ids=ids,
            attention_mask=attn,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **{self.cache_kwarg: cache},
        )
        logits = out.logits[:, -1, :]
        fan_out = torch.tensor([slot[i] for i, _ in rows], device=device)
        if shared:
            cache = SharedPrefixCache(cache, attn, fan_out, reserve=max_new)
            logits, positions, attn = logits[fan_out], positions[fan_out], None
        elif len(rows) != len(unique) or not torch.equal(fan_out, torch.arange(len(unique), device=device)):
            cache.batch_select_indices(fan_out)
            logits, attn, positions = logits[fan_out], attn[fan_out], positions[fan_out]
        next_pos = positions[:, -1] + 1

        uniforms = None
        if not params.greedy:
            streams = []
            for i, k in rows:
                g = torch.Generator().manual_seed(sequence_seed(seed, seed_index[i], k))
                # 1 - U[0,1) lies in (0, 1], which inverse-CDF sampling needs.
                streams.append(1.0 - torch.rand(max_new, generator=g, dtype=torch.float64))
            uniforms = torch.stack(streams).to(device)

        eos = torch.tensor(self.eos_ids, device=device)
        n_rows = len(rows)
        # Per batch position (row alive[b] of the micro-batch): the tokens drawn, their log-probs and the step
        # of the row's EOS (max_new: none yet). Written a column per step; rows leave when they are dropped.
        tok_b = torch.full((n_rows, max_new), self.pad_id, dtype=torch.long, device=device)
        logp_b = torch.zeros((n_rows, max_new), dtype=torch.float32, device=device)
        stop_b = torch.full((n_rows,), max_new, dtype=torch.long, device=device)
        tokens, logps, stop_step = torch.empty_like(tok_b), torch.empty_like(logp_b), torch.empty_like(stop_b)
        alive = torch.arange(n_rows, device=device)  # batch position -> row
        done = torch.zeros(n_rows, dtype=torch.bool, device=device)

        def settle(positions: torch.Tensor) -> None:
            """Copy the results of batch `positions` to their rows."""
            for out, part in ((tokens, tok_b), (logps, logp_b), (stop_step, stop_b)):
                out.index_copy_(0, alive[positions], part[positions])

        for t in range(max_new):
            u = uniforms[:, t] if uniforms is not None else None
            nxt = select_next_tokens(logits, u, params.temperature, params.top_k, params.top_p)
            # Finished rows keep decoding padding (ignored) until they are dropped.
            nxt = nxt.masked_fill(done, self.pad_id)
            tok_b[:, t] = nxt
            logp_b[:, t] = token_logprobs(logits, nxt)
            hit = torch.isin(nxt, eos) & ~done
            stop_b.masked_fill_(hit, t)
            done |= hit
            n_done = int(done.sum())
            if t == max_new - 1 or n_done == len(alive):
                break
            # Drop finished rows once they are an eighth of the batch, so the cache copy is paid rarely.
            if n_done and n_done * DROP_EVERY >= len(alive):
                keep = (~done).nonzero().squeeze(-1)
                settle(done.nonzero().squeeze(-1))
                tok_b, logp_b, stop_b = tok_b[keep], logp_b[keep], stop_b[keep]
                cache.batch_select_indices(keep)
                alive, next_pos, nxt, done = alive[keep], next_pos[keep], nxt[keep], done[keep]
                uniforms = uniforms[keep] if uniforms is not None else None
                attn = attn[keep] if attn is not None else None
            if attn is not None:
                attn = torch.cat([attn, attn.new_ones((len(alive), 1))], dim=1)
            # Shared-prefix attention needs no mask: a row's own tokens are all valid, the prompts' padding
            # is in the cache.
            if lean is not None:
                logits = lean.step(nxt, next_pos, cache, attn)
            else:
                with decoding_with(self.model, cache) if shared else nullcontext():
                    out = self.model(
                        input_ids=nxt.unsqueeze(-1),
                        attention_mask=attn,
                        position_ids=next_pos.unsqueeze(-1),
                        use_cache=True,
                        **{self.cache_kwarg: cache},
                    )
                logits = out.logits[:, -1, :]
            next_pos = next_pos + 1
        settle(torch.arange(len(alive), device=device))
        stopped = stop_step < max_new
        lengths = torch.where(stopped, stop_step + 1, t + 1)

        tokens, logps, lengths, stopped = tokens.cpu(), logps.cpu(), lengths.cpu(), stopped.cpu()
        completions = []
        for r in range(n_rows):
            length = int(lengths[r])
            token_ids = tokens[r, :length].tolist()
            text_ids = token_ids[:-1] if stopped[r] else token_ids
            completions.append(
                Completion(
                    text=self.tokenizer.decode(text_ids, skip_special_tokens=True),
                    token_ids=token_ids,
                    logp_sum=float(logps[r, :length].sum()),
                    num_tokens=length,
                    finish_reason="stop" if stopped[r] else "length",
                )
            )
        return completions


def _copy(c: Completion) -> Completion:
    return replace(c, token_ids=list(c.token_ids))


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return nullcontext()
    return tqdm(total=total, desc="generate", unit="seq", dynamic_ncols=True)
