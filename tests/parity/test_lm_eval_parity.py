"""podium's eval scores equal lm-eval's own on a local multiple-choice task and a tiny saved model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")

from podium.cli.eval import main as eval_main
from podium.evaluation.lm_eval_bridge import evaluate_lm_eval
from podium.models.io import load_model, load_tokenizer, save_model
from podium.models.tiny import build_tiny_model

pytestmark = pytest.mark.parity

TASK = "podium_toy_mc"
# Choices of different lengths, so acc and acc_norm pick different answers on some rows.
ROWS = [
    {"question": f"what is {i} plus {i}?", "choices": [str(2 * i), f"{2 * i + 1} apples", "banana", "x"],
     "label": i % 4}
    for i in range(12)
]


def write_task(folder: Path) -> Path:
    data = folder / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    tasks = folder / "tasks"
    tasks.mkdir()
    (tasks / "toy_mc.yaml").write_text(
        f"task: {TASK}\n"
        "dataset_path: json\n"
        "dataset_kwargs:\n"
        f"  data_files:\n    test: {data}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        'doc_to_text: "Q: {{question}}\\nA:"\n'
        'doc_to_choice: "{{choices}}"\n'
        'doc_to_target: "{{label}}"\n'
        "metric_list:\n"
        "  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
        "  - metric: acc_norm\n    aggregation: mean\n    higher_is_better: true\n"
    )
    return tasks


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("lmeval")
    model, tok = build_tiny_model(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2, seed=0)
    save_model(model, tok, root / "model")
    return root, write_task(root)


def lm_eval_reference(model_dir: Path, tasks_dir: Path) -> dict:
    """lm-eval's own scores, model loaded by lm-eval from the folder."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    res = simple_evaluate(model="hf", model_args=f"pretrained={model_dir},dtype=float32", tasks=[TASK],
                          device="cpu", batch_size=4, task_manager=TaskManager(include_path=str(tasks_dir)),
                          bootstrap_iters=0)
    return res["results"][TASK]


def test_bridge_on_the_in_memory_model_equals_lm_eval(setup, tmp_path):
    root, tasks_dir = setup
    ref = lm_eval_reference(root / "model", tasks_dir)
    model, tok = load_model(root / "model"), load_tokenizer(root / "model")

    ours = evaluate_lm_eval(model, tok, [TASK], include_path=tasks_dir)["tasks"][TASK]
    assert ours["acc"] == pytest.approx(ref["acc,none"])
    assert ours["acc_norm"] == pytest.approx(ref["acc_norm,none"])
    # The toy set is built so that length normalisation changes some answers; otherwise
    # the acc_norm check above could not tell the two metrics apart.
    assert ref["acc,none"] != ref["acc_norm,none"]


@pytest.mark.integration
def test_podium_eval_cli_equals_lm_eval_cli(setup, tmp_path):
    root, tasks_dir = setup
    ours_file = tmp_path / "ours.json"
    assert eval_main(["--model", str(root / "model"), "--tasks", TASK, "--include-path", str(tasks_dir),
                      "--output", str(ours_file)]) == 0
    ours = json.loads(ours_file.read_text())["tasks"][TASK]

    lm_eval_bin = Path(sys.executable).with_name("lm_eval")
    out_dir = tmp_path / "lm_eval_out"
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1")
    subprocess.run(
        [str(lm_eval_bin), "--model", "hf", "--model_args", f"pretrained={root / 'model'},dtype=float32",
         "--tasks", TASK, "--include_path", str(tasks_dir), "--device", "cpu", "--batch_size", "4",
         "--output_path", str(out_dir)],
        check=True, env=env, capture_output=True,
    )
    result_files = sorted(out_dir.rglob("results_*.json"))
    assert result_files, f"lm_eval wrote no results under {out_dir}"
    ref = json.loads(result_files[-1].read_text())["results"][TASK]
    assert ours["acc"] == pytest.approx(ref["acc,none"])
    assert ours["acc_norm"] == pytest.approx(ref["acc_norm,none"])
