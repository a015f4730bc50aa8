"""`podium eval preference` on a tiny saved model."""

import json

import pytest
import torch

from podium.cli.preference import main
from podium.models.heads import GPMModel, RewardModel
from podium.models.tiny import build_tiny_model


@pytest.fixture(scope="module", params=["reward", "gpm"])
def saved(request, tmp_path_factory):
    lm, tok = build_tiny_model(hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2, seed=0)
    torch.manual_seed(0)
    model = RewardModel(lm) if request.param == "reward" else GPMModel(lm, k=2)
    out = tmp_path_factory.mktemp(request.param) / "pm"
    model.save(out, tok)
    return model.eval(), tok, out


def write_pairs(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_eval_preference_prints_and_writes_accuracy(saved, tmp_path, capsys):
    model, tok, folder = saved
    rows = [{"prompt": "2+2?", "chosen": "4", "rejected": "5"},
            {"prompt": "hi", "chosen": "hello", "rejected": "go away"},
            {"prompt": [{"role": "user", "content": "1+1?"}], "chosen": "2", "rejected": "11"}]
    data = tmp_path / "pairs.jsonl"
    write_pairs(data, rows)
    # Expected accuracy from the in-memory model, pair by pair.
    from podium.data.response_batches import make_pair_collate
    with torch.no_grad():
        z = model.pair_logits(make_pair_collate(tok)(rows))
    expected = (z > 0).float().mean().item()
    out = tmp_path / "res" / "acc.json"
    assert main(["--model", str(folder), "--data", str(data), "--output", str(out)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(last)
    assert result == {"accuracy": pytest.approx(expected), "count": 3}
    assert json.loads(out.read_text()) == result


def test_eval_preference_bad_data_names_file_line_and_field(saved, tmp_path, capsys):
    _, _, folder = saved
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n"
                    + json.dumps({"prompt": "p", "chosen": "a"}) + "\n")
    assert main(["--model", str(folder), "--data", str(data)]) == 1
    err = capsys.readouterr().err
    assert f"{data}:2" in err and "'rejected'" in err and "Traceback" not in err


def test_eval_preference_on_a_non_preference_folder(tmp_path, capsys):
    data = tmp_path / "pairs.jsonl"
    write_pairs(data, [{"prompt": "p", "chosen": "a", "rejected": "b"}])
    assert main(["--model", str(tmp_path), "--data", str(data)]) == 1
    assert "preference_model.json" in capsys.readouterr().err
