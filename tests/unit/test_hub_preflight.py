import subprocess
import sys
from pathlib import Path

from podium.hub import hub_inputs
from podium.stages import get_stage

ROOT = Path(__file__).parents[2]


def test_hub_inputs_are_the_typed_references_of_the_stage_config():
    train = {"model": "org/model", "data": [{"path": "org/set", "count": 5}, {"task": "arithmetic"}, "org/more"],
             "objective": "dpo", "reference_cache_dir": "org/not-a-ref"}
    assert hub_inputs(get_stage("train").config, train) == [
        ("org/model", "model"), ("org/set", "dataset"), ("org/more", "dataset")]
    merge = {"config": {"models": [{"model": "org/a+org/lora"}], "base_model": "org/a"}}
    assert hub_inputs(get_stage("merge").config, merge) == [("org/a", "model"), ("org/a", "model"), ("org/lora", "model")]
    selfplay = {"model": "org/policy", "judge": {"kind": "gpm", "model": "org/gpm"}, "prompts": "local/file.jsonl",
                "task": "org/looks-like-an-id"}
    assert hub_inputs(get_stage("selfplay").config, selfplay) == [("org/policy", "model"), ("org/gpm", "model")]


def test_full_scale_recipe_fails_fast_offline(tmp_path):
    env = {"PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-m", "podium", "run", str(ROOT / "recipes/smaug-dpop.yaml"),
                        "--output", str(tmp_path / "run")], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "dataset 'meta-math/MetaMathQA'" in r.stderr and "model 'mistralai/Mixtral-8x7B-Instruct-v0.1'" in r.stderr
    assert not list((tmp_path / "run").glob("*/.podium-done"))
