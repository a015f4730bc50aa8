"""Transformers backend: a batched decoding loop over `model.forward` with a KV cache.

Why not `model.generate`: one loop of our own lets every sequence draw from its own
seeded random stream (outputs do not depend on batch size or on the other prompts in
the batch), records the model's log-prob of each sampled token on the way, drops
finished sequences from the batch, and prefills a prompt once for its K samples. Where it is
exact for the model (`podium.models.introspect.full_causal_attention`) the K samples also keep one
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

from podium.generation.decoding import DecodingRows, DecodingStep
from podium.generation.kv_cache import preallocated_cache
from podium.generation.lean_decode import LeanDecoder, lean_applicable
from podium.generation.sampler import Completion, Prompt, SamplingParams, encode_prompts, sequence_seed
from podium.generation.sampling import select_next_tokens
from podium.generation.shared_prefix import SharedPrefixCache, decoding_with
from podium.models.introspect import cache_argument, full_causal_attention
from podium.models.io import check_vocab, generation_budget

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
        slot, ids, attn = left_padded(rows, prompt_ids, self.pad_id)
        ids, attn = ids.to(device), attn.to(device)
        positions = (attn.cumsum(-1) - 1).clamp_(min=0)
        # Never past the model's positions (nor a cache reserved for more tokens than it can hold).
        max_new = generation_budget(self.model, params.max_new_tokens, ids.shape[1])
        step = self._prefill(rows, slot, ids, attn, positions, max_new)
        uniforms = None if params.greedy else sample_uniforms(rows, seed, seed_index, max_new).to(device)
        batch = DecodingRows.start(len(rows), max_new, self.pad_id, device)
        eos = torch.tensor(self.eos_ids, device=device)
        for t in range(max_new):
            u = uniforms[:, t] if uniforms is not None else None
            nxt = select_next_tokens(step.logits, u, params.temperature, params.top_k, params.top_p)
            # Finished rows keep decoding padding (ignored) until they are dropped.
            step.nxt = nxt.masked_fill(batch.done, self.pad_id)
            n_done = batch.record(t, step.nxt, step.logits, eos)
            if t == max_new - 1 or n_done == len(batch.alive):
                break
            # Drop finished rows once they are an eighth of the batch, so the cache copy is paid rarely.
            if n_done and n_done * DROP_EVERY >= len(batch.alive):
                keep = batch.drop_finished()
                step.keep(keep)
                uniforms = uniforms[keep] if uniforms is not None else None
            self._next_logits(step, lean)
        batch.settle(torch.arange(len(batch.alive), device=device))
        return self._completions(batch, t)

    def _prefill(self, rows, slot, ids, attn, positions, max_new: int) -> DecodingStep:
        """Prefill each distinct prompt once; then either keep one copy of its cache for its K rows
        (shared-prefix attention) or fan the cache out to them. Returns the first step's state."""
        config = self.model.config
        shared = full_causal_attention(config) and config._attn_implementation in ("sdpa", "eager")
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
        n_unique = ids.shape[0]
        fan_out = torch.tensor([slot[i] for i, _ in rows], device=ids.device)
        if shared:
            cache = SharedPrefixCache(cache, attn, fan_out, reserve=max_new)
            logits, positions, attn = logits[fan_out], positions[fan_out], None
        elif len(rows) != n_unique or not torch.equal(fan_out, torch.arange(n_unique, device=ids.device)):
            cache.batch_select_indices(fan_out)
            logits, attn, positions = logits[fan_out], attn[fan_out], positions[fan_out]
        return DecodingStep(cache, logits, attn, positions[:, -1] + 1, shared)

    def _next_logits(self, step: DecodingStep, lean: LeanDecoder | None) -> None:
        """One decoding step: feed the tokens just drawn (`step.nxt`), get the next logits, advance positions."""
        if step.attn is not None:
            step.attn = torch.cat([step.attn, step.attn.new_ones((len(step.nxt), 1))], dim=1)
        # Shared-prefix attention needs no mask: a row's own tokens are all valid, the prompts' padding
        # is in the cache.
        if lean is not None:
            step.logits = lean.step(step.nxt, step.next_pos, step.cache, step.attn)
        else:
            with decoding_with(self.model, step.cache) if step.shared else nullcontext():
                out = self.model(
                    input_ids=step.nxt.unsqueeze(-1),
                    attention_mask=step.attn,
                    position_ids=step.next_pos.unsqueeze(-1),
                    use_cache=True,
                    **{self.cache_kwarg: step.cache},
                )
            step.logits = out.logits[:, -1, :]
        step.next_pos = step.next_pos + 1

    def _completions(self, batch: DecodingRows, last_step: int) -> list[Completion]:
        """The rows' completions: text without the EOS, token ids with it, the summed log-prob, why it ended."""
        stopped = batch.stop_step < batch.max_new
        lengths = torch.where(stopped, batch.stop_step + 1, last_step + 1)
        tokens, logps, lengths, stopped = batch.tokens.cpu(), batch.logps.cpu(), lengths.cpu(), stopped.cpu()
        completions = []
        for r in range(len(tokens)):
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


def left_padded(rows: list[tuple[int, int]], prompt_ids: list[list[int]], pad_id: int):
    """The distinct prompts of `rows`, LEFT padded: (prompt index -> batch slot, ids `[P, W]`, mask `[P, W]`)."""
    unique = list(dict.fromkeys(i for i, _ in rows))
    slot = {i: s for s, i in enumerate(unique)}
    width = max(len(prompt_ids[i]) for i in unique)
    ids = torch.full((len(unique), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(unique), width), dtype=torch.long)
    for s, i in enumerate(unique):
        p = prompt_ids[i]
        ids[s, width - len(p) :] = torch.tensor(p)
        attn[s, width - len(p) :] = 1
    return slot, ids, attn


def sample_uniforms(rows: list[tuple[int, int]], seed: int, seed_index: list[int], max_new: int) -> torch.Tensor:
    """`[rows, max_new]` float64 in (0, 1]: row (i, k) draws from its own stream, seeded by
    `sequence_seed(seed, seed_index[i], k)`, so a sample does not depend on the batch it is decoded in."""
    streams = []
    for i, k in rows:
        g = torch.Generator().manual_seed(sequence_seed(seed, seed_index[i], k))
        # 1 - U[0,1) lies in (0, 1], which inverse-CDF sampling needs.
        streams.append(1.0 - torch.rand(max_new, generator=g, dtype=torch.float64))
    return torch.stack(streams)


def _copy(c: Completion) -> Completion:
    return replace(c, token_ids=list(c.token_ids))


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return nullcontext()
    return tqdm(total=total, desc="generate", unit="seq", dynamic_ncols=True)
