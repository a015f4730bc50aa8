"""Transformers sampler: left padding, EOS stopping, seeds, K samples, log-probs."""

import pytest
import torch

from podium.generation.hf_sampler import TransformersSampler
from podium.generation.sampler import SamplingParams, encode_prompts
from podium.models.tiny import build_tiny_model

PROMPTS = ["a", "the quick brown fox", [{"role": "user", "content": "What is 2+3?"}], "12 + 30 ="]


@pytest.fixture(scope="module")
def tiny():
    model, tok = build_tiny_model(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2, seed=3)
    return model.eval(), tok


def ids(completions):
    return [[c.token_ids for c in row] for row in completions]


GREEDY = SamplingParams(temperature=0, max_new_tokens=12)
SAMPLE = SamplingParams(temperature=1.0, top_p=0.9, max_new_tokens=12)


def test_batched_greedy_equals_unbatched(tiny):
    """Prompts of lengths 1..~30 in one left-padded batch give what each gives alone."""
    model, tok = tiny
    batched = TransformersSampler(model, tok, batch_size=8).generate(PROMPTS, 1, GREEDY)
    alone = [TransformersSampler(model, tok, batch_size=1).generate([p], 1, GREEDY)[0] for p in PROMPTS]
    assert ids(batched) == ids(alone)
    for b, a in zip(batched, alone):
        assert b[0].logp_sum == pytest.approx(a[0].logp_sum, abs=1e-4)


def test_greedy_matches_model_generate(tiny):
    model, tok = tiny
    out = TransformersSampler(model, tok).generate(PROMPTS, 1, GREEDY)
    for prompt_ids, row in zip(encode_prompts(tok, PROMPTS), out):
        x = torch.tensor([prompt_ids])
        y = model.generate(
            input_ids=x,
            attention_mask=torch.ones_like(x),
            do_sample=False,
            max_new_tokens=12,
            pad_token_id=tok.pad_token_id,
        )
        assert row[0].token_ids == y[0, x.shape[1] :].tolist()


def test_eos_stops_each_sequence(tiny):
    """Declare the 4th greedy token of prompt 1 an EOS: that row stops there, the others go on."""
    model, tok = tiny
    free = TransformersSampler(model, tok).generate(PROMPTS, 1, GREEDY)
    stop_id = free[1][0].token_ids[3]
    first = free[1][0].token_ids.index(stop_id)
    saved = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = [tok.eos_token_id, stop_id]
    try:
        stopped = TransformersSampler(model, tok).generate(PROMPTS, 1, GREEDY)
    finally:
        model.generation_config.eos_token_id = saved
    row = stopped[1][0]
    assert row.token_ids == free[1][0].token_ids[: first + 1]
    assert row.finish_reason == "stop" and row.num_tokens == first + 1
    for f, s in zip(free, stopped):
        toks = f[0].token_ids
        end = toks.index(stop_id) + 1 if stop_id in toks else len(toks)
        assert s[0].token_ids == toks[:end]
        assert s[0].finish_reason == ("stop" if stop_id in toks else "length")


def test_seed_reproducible_and_batch_size_independent(tiny):
    """Ten EOS ids make rows stop at different steps, exercising the shrinking batch."""
    model, tok = tiny
    saved = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = list(range(10, 20))
    try:
        a = TransformersSampler(model, tok, batch_size=16).generate(PROMPTS, 3, SAMPLE, seed=7)
        b = TransformersSampler(model, tok, batch_size=16).generate(PROMPTS, 3, SAMPLE, seed=7)
        c = TransformersSampler(model, tok, batch_size=2).generate(PROMPTS, 3, SAMPLE, seed=7)
        d = TransformersSampler(model, tok, batch_size=16).generate(PROMPTS, 3, SAMPLE, seed=8)
    finally:
        model.generation_config.eos_token_id = saved
    assert ids(a) == ids(b) == ids(c)
    assert ids(a) != ids(d)
    assert len({len(t) for row in ids(a) for t in row}) > 1, "rows should stop at different lengths"
    for row in a:
        for comp in row:
            assert comp.num_tokens == len(comp.token_ids) <= SAMPLE.max_new_tokens


def test_k_samples_per_prompt(tiny):
    model, tok = tiny
    out = TransformersSampler(model, tok).generate(PROMPTS, 4, SAMPLE, seed=0)
    assert [len(row) for row in out] == [4, 4, 4, 4]
    assert all(len({tuple(c.token_ids) for c in row}) > 1 for row in out)
    greedy = TransformersSampler(model, tok).generate(PROMPTS, 3, GREEDY)
    assert all(len({tuple(c.token_ids) for c in row}) == 1 for row in greedy)


def test_top_k_1_equals_greedy(tiny):
    model, tok = tiny
    params = SamplingParams(temperature=1.0, top_k=1, max_new_tokens=12)
    assert ids(TransformersSampler(model, tok).generate(PROMPTS, 2, params, seed=5)) == ids(
        TransformersSampler(model, tok).generate(PROMPTS, 2, GREEDY)
    )


def test_logps_equal_recomputed_forward(tiny):
    """logp_sum = sum of log softmax(model(prompt + completion)) at the completion tokens, temperature 1."""
    model, tok = tiny
    params = SamplingParams(temperature=0.7, top_p=0.8, max_new_tokens=10)
    out = TransformersSampler(model, tok).generate(PROMPTS, 2, params, seed=1)
    for prompt_ids, row in zip(encode_prompts(tok, PROMPTS), out):
        for comp in row:
            full = torch.tensor([prompt_ids + comp.token_ids])
            with torch.no_grad():
                logits = model(full).logits[0, len(prompt_ids) - 1 : -1]
            expected = torch.log_softmax(logits, -1).gather(-1, torch.tensor(comp.token_ids)[:, None]).sum()
            assert comp.logp_sum == pytest.approx(expected.item(), abs=1e-4)
            assert comp.mean_logp == pytest.approx(comp.logp_sum / len(comp.token_ids))


def test_messages_render_with_chat_template(tiny):
    model, tok = tiny
    messages = [{"role": "user", "content": "hi"}]
    rendered = "<|user|>hi<|end|><|assistant|>"
    sampler = TransformersSampler(model, tok)
    assert ids(sampler.generate([messages], 1, GREEDY)) == ids(sampler.generate([rendered], 1, GREEDY))


def test_restores_training_mode(tiny):
    model, tok = tiny
    model.train()
    try:
        out = TransformersSampler(model, tok).generate(PROMPTS[:1], 2, GREEDY)
        assert model.training
        out[0][0].token_ids.append(-1)
        assert out[0][1].token_ids[-1] != -1  # greedy copies are independent objects
    finally:
        model.eval()


def test_plain_strings_get_special_tokens_templates_do_not():
    """With a BOS-adding post-processor (as Llama tokenizers have), "ab" -> [BOS, a, b]; a chat
    prompt is rendered by the template and tokenised without a second BOS."""
    from tokenizers import processors

    from podium.models.tiny import build_tokenizer

    tok = build_tokenizer()
    bos = tok.convert_tokens_to_ids("<|system|>")
    tok._tokenizer.post_processor = processors.TemplateProcessing(
        single="<|system|> $A", special_tokens=[("<|system|>", bos)]
    )
    plain, chat = encode_prompts(tok, ["ab", [{"role": "user", "content": "ab"}]])
    assert plain == [bos, *tok.convert_tokens_to_ids(["a", "b"])]
    assert chat[0] == tok.convert_tokens_to_ids("<|user|>") and bos not in chat
