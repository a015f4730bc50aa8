"""Reward/GPM heads: shapes, pooling, save/load round trip, pair collate, objectives."""

import json

import pytest
import torch

from podium.data.response_batches import encode_response, make_pair_collate
from podium.errors import PodiumError
from podium.models.heads import (
    GPMModel,
    RewardModel,
    last_token_index,
    load_preference_model,
)
from podium.models.tiny import build_tiny_model
from podium.training.preference_model import gpm_objective, reward_objective

PAIRS = [
    {"prompt": "2+2?", "chosen": "4", "rejected": "5"},
    {"prompt": [{"role": "user", "content": "hi"}], "chosen": [{"role": "assistant", "content": "hello"}],
     "rejected": [{"role": "assistant", "content": "go"}]},
]


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_model(hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2, seed=0)


def make(kind, tiny, **kw):
    _, tok = tiny
    torch.manual_seed(0)
    fresh, _ = build_tiny_model(tok, hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2, seed=0)
    return (RewardModel(fresh, **kw) if kind == "reward" else GPMModel(fresh, **kw)), tok


def test_last_token_index_left_and_right_padding():
    mask = torch.tensor([[1, 1, 1, 0], [0, 0, 1, 1], [1, 0, 0, 0]])
    assert last_token_index(mask).tolist() == [2, 3, 0]


def test_collate_renders_chat_template_and_orders_chosen_then_rejected(tiny):
    _, tok = tiny
    batch = make_pair_collate(tok)(PAIRS)
    assert batch["count"] == 2 and batch["input_ids"].shape[0] == 4
    first = tok.decode(batch["input_ids"][0][batch["attention_mask"][0].bool()])
    assert first == "<|user|>2+2?<|end|><|assistant|>4<|end|>"
    # The prompt part (with generation prompt) is "<|user|>2+2?<|end|><|assistant|>": 1+4+1+1 tokens.
    assert batch["prompt_lengths"][0].item() == 7
    assert tok.decode(batch["input_ids"][2][:8]) == "<|user|>2+2?<|end|><|assistant|>5"


def test_encode_message_list_prompt(tiny):
    _, tok = tiny
    ids, n = encode_response(tok, PAIRS[1]["prompt"], PAIRS[1]["chosen"])
    assert tok.decode(ids) == "<|user|>hi<|end|><|assistant|>hello<|end|>" and n == 5


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_reward_head_shapes_and_padding_invariance(tiny, pooling):
    model, tok = make("reward", tiny, pooling=pooling)
    batch = make_pair_collate(tok)(PAIRS)
    r = model(batch["input_ids"], batch["attention_mask"], batch["prompt_lengths"])
    assert r.shape == (4,)
    # Same sequence alone (no padding) scores the same as inside the padded batch.
    alone = make_pair_collate(tok)(PAIRS[:1])
    r1 = model(alone["input_ids"], alone["attention_mask"], alone["prompt_lengths"])
    assert torch.allclose(r1[0], r[0], atol=1e-5)
    assert model.pair_logits(batch).shape == (2,)


def test_pooling_reads_the_response_tokens_or_the_last_token(tiny):
    """mean: the average last-layer state over response positions (prompt and padding excluded),
    derived here from the backbone's own hidden states; last: the state of the last non-pad token."""
    model, tok = make("reward", tiny)
    batch = make_pair_collate(tok)(PAIRS)
    hidden = model.hidden_states(batch["input_ids"], batch["attention_mask"])
    for row in range(4):
        start, end = int(batch["prompt_lengths"][row]), int(batch["attention_mask"][row].sum())
        expected = hidden[row, start:end].mean(0)
        pooled = model.pool(hidden, batch["attention_mask"], batch["prompt_lengths"])[row]
        assert torch.allclose(pooled, expected, atol=1e-6)
        model.pooling = "last"
        assert torch.equal(model.pool(hidden, batch["attention_mask"])[row], hidden[row, end - 1])
        model.pooling = "mean"
    with pytest.raises(ValueError, match="prompt_lengths"):
        model(batch["input_ids"], batch["attention_mask"])
    with pytest.raises(PodiumError, match="pooling"):
        make("gpm", tiny, pooling="max")


def test_folder_saved_without_pooling_loads_with_last_token_pooling(tiny, tmp_path):
    model, tok = make("gpm", tiny, k=2, pooling="last")
    model.eval()
    model.save(tmp_path / "pm", tok)
    cfg = json.loads((tmp_path / "pm" / "preference_model.json").read_text())
    assert cfg["pooling"] == "last"
    del cfg["pooling"]
    (tmp_path / "pm" / "preference_model.json").write_text(json.dumps(cfg))
    loaded, _ = load_preference_model(tmp_path / "pm")
    assert loaded.pooling == "last"
    batch = make_pair_collate(tok)(PAIRS)
    assert torch.allclose(loaded.pair_logits(batch), model.pair_logits(batch), atol=1e-6)


@pytest.mark.parametrize("gates", [None, "softmax", "softplus"])
def test_gpm_head_shapes_unit_norm_and_gates(tiny, gates):
    model, tok = make("gpm", tiny, k=3, gates=gates)
    batch = make_pair_collate(tok)(PAIRS)
    v, lam = model(batch["input_ids"], batch["attention_mask"], batch["prompt_lengths"])
    assert v.shape == (4, 6)
    assert torch.allclose(v.norm(dim=-1), torch.ones(4), atol=1e-5)
    if gates is None:
        assert lam is None
    else:
        assert lam.shape == (4, 3) and (lam > 0).all()
        if gates == "softmax":
            assert torch.allclose(lam.sum(-1), torch.ones(4), atol=1e-5)
        # The gate reads the prompt's last token: chosen and rejected of a pair agree.
        assert torch.allclose(lam[0], lam[2], atol=1e-5)


def test_gpm_rejects_bad_config(tiny):
    with pytest.raises(PodiumError, match="gates"):
        make("gpm", tiny, gates="sigmoid")


@pytest.mark.parametrize("kind,kw", [("reward", {}), ("reward", {"pooling": "last"}),
                                     ("gpm", {"k": 2, "gates": "softmax", "tau": 0.2})])
def test_save_load_round_trip_gives_equal_outputs(tiny, tmp_path, kind, kw):
    model, tok = make(kind, tiny, **kw)
    model.eval()
    batch = make_pair_collate(tok)(PAIRS)
    before = model.pair_logits(batch)
    model.save(tmp_path / "pm", tok)
    assert (tmp_path / "pm" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "pm" / "preference_model.json").read_text())["kind"] == kind
    loaded, tok2 = load_preference_model(tmp_path / "pm")
    assert type(loaded) is type(model)
    assert torch.allclose(loaded.pair_logits(make_pair_collate(tok2)(PAIRS)), before, atol=1e-6)


def test_load_refuses_pickle_only_and_non_preference_folders(tiny, tmp_path):
    with pytest.raises(PodiumError, match="preference_model.json"):
        load_preference_model(tmp_path)
    model, tok = make("reward", tiny)
    model.save(tmp_path / "pm", tok)
    (tmp_path / "pm" / "model.safetensors").rename(tmp_path / "pm" / "pytorch_model.bin")
    with pytest.raises(PodiumError, match="pickle"):
        load_preference_model(tmp_path / "pm")


@pytest.mark.parametrize("kind,objective", [("reward", reward_objective), ("gpm", gpm_objective)])
def test_objective_sums_per_pair_losses_and_reports_metrics(tiny, kind, objective):
    model, tok = make(kind, tiny)
    batch = make_pair_collate(tok)(PAIRS)
    loss_sum, metrics = objective(model, batch)
    z = model.pair_logits(batch)
    assert torch.allclose(loss_sum, -torch.nn.functional.logsigmoid(z).sum(), atol=1e-6)
    assert set(metrics) == {"loss", "accuracy", "margin"} and all(m.shape == (2,) for m in metrics.values())
    assert not any(m.requires_grad for m in metrics.values())
    loss_sum.backward()
    head = model.score if kind == "reward" else model.embed
    assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0


def test_one_step_lowers_the_loss(tiny):
    model, tok = make("reward", tiny)
    batch = make_pair_collate(tok)(PAIRS)
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    before, _ = reward_objective(model, batch)
    before.backward()
    opt.step()
    after, _ = reward_objective(model, batch)
    assert after < before


def test_io_save_model_saves_a_preference_model(tiny, tmp_path):
    """The shared loop saves with `io.save_model`; a preference model must survive that path."""
    from podium.models import io

    model, tok = make("gpm", tiny, k=2)
    model.eval()
    io.save_model(model, tok, tmp_path / "out")
    loaded, _ = load_preference_model(tmp_path / "out")
    batch = make_pair_collate(tok)(PAIRS)
    assert torch.allclose(loaded.pair_logits(batch), model.pair_logits(batch), atol=1e-6)


def test_build_preference_model_validates_options(tiny):
    from podium.models.heads import build_preference_model

    lm, _ = tiny
    assert isinstance(build_preference_model("gpm", lm, k=2, tau=0.5), GPMModel)
    with pytest.raises(PodiumError, match="unknown gpm options"):
        build_preference_model("gpm", lm, dim=4)
    with pytest.raises(PodiumError, match="not a preference-model objective"):
        build_preference_model("dpo", lm)
