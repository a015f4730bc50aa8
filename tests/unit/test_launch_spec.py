"""`launch:` specs: validation against accelerate's own arguments and config dataclass (file:line errors),
the environment checks made before a run starts, the exact launch command, and what enters the key."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from podium.cli.run import main as run_main
from podium.distributed.environment import environment_problems
from podium.distributed.launcher import format_command, launch_command
from podium.errors import ConfigError
from podium.pipeline import run_plan
from podium.planning import make_plan

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs" / "accelerate"


def recipe(tmp_path: Path, text: str) -> str:
    p = tmp_path / "r.yaml"
    p.write_text(textwrap.dedent(text))
    return str(p)


def plan(tmp_path: Path, text: str, *overrides: str):
    return make_plan(recipe(tmp_path, text), list(overrides), output=str(tmp_path / "run"))


GEN = """\
name: t
{launch}
stages:
  - {{name: gen, kind: generate, model: m, prompts: p.jsonl{stage_launch}}}
  - {{name: dpo, kind: train, model: m, data: pairs.jsonl{stage_launch}}}
  - {{name: ev, kind: eval, model: m, task: arithmetic, count: 2}}
"""


def gen(launch: str = "", stage_launch: str = "") -> str:
    return GEN.format(launch=launch, stage_launch=stage_launch)


def train_only(launch: str) -> str:
    return f"name: t\n{launch}\nstages:\n  - {{name: dpo, kind: train, model: m, data: pairs.jsonl}}\n"


def test_recipe_launch_applies_to_distributed_kinds_only(tmp_path):
    p = plan(tmp_path, gen("launch: {num_processes: 2}"))
    by_name = {s.name: s for s in p.stages}
    assert by_name["gen"].launch.num_processes == 2 and by_name["dpo"].launch.num_processes == 2
    assert by_name["ev"].launch is None  # a light stage stays in-process


def test_stage_launch_merges_over_the_recipe_and_null_opts_out(tmp_path):
    text = """\
    name: t
    launch: {num_processes: 2, timeout: 30}
    stages:
      - {name: a, kind: generate, model: m, prompts: p.jsonl, launch: {mixed_precision: bf16}}
      - {name: b, kind: generate, model: m, prompts: p.jsonl, launch: null}
    """
    a, b = plan(tmp_path, text).stages
    assert a.launch.num_processes == 2 and a.launch.mixed_precision == "bf16" and a.launch.timeout == 30
    assert b.launch is None


def test_unknown_accelerate_field_names_file_line(tmp_path):
    with pytest.raises(ConfigError) as e:
        plan(tmp_path, gen(stage_launch=", launch: {num_procesess: 2}"))
    msg = str(e.value)
    assert "r.yaml:4:" in msg and "unknown key 'num_procesess'" in msg and "did you mean 'num_processes'" in msg


def test_values_are_checked_with_accelerates_types(tmp_path):
    with pytest.raises(ConfigError, match=r"r.yaml:2: launch: num_processes must be int"):
        plan(tmp_path, gen("launch: {num_processes: two}"))
    with pytest.raises(ConfigError, match="mixed_precision must be one of no, fp16, bf16, fp8"):
        plan(tmp_path, gen("launch: {num_processes: 2, mixed_precision: fp64}"))
    with pytest.raises(ConfigError, match="multi_gpu is a switch"):
        plan(tmp_path, gen("launch: {num_processes: 2, multi_gpu: 3}"))
    with pytest.raises(ConfigError, match="num_processes is not set"):
        plan(tmp_path, gen("launch: {mixed_precision: bf16}"))
    with pytest.raises(ConfigError, match="multiple of num_machines"):
        plan(tmp_path, gen("launch: {num_processes: 3, num_machines: 2, main_process_ip: 10.0.0.1}"))
    with pytest.raises(ConfigError, match="need main_process_ip"):
        plan(tmp_path, gen("launch: {num_processes: 4, num_machines: 2}"))
    with pytest.raises(ConfigError, match="timeout must be a number of seconds"):
        plan(tmp_path, gen("launch: {num_processes: 2, timeout: 0}"))
    # YAML 1.1 reads a bare `no` as false: taken as "no".
    assert plan(tmp_path, gen("launch: {num_processes: 2, mixed_precision: no}")).stages[0].launch.mixed_precision == "no"


def test_config_file_fields_are_accelerates(tmp_path):
    (tmp_path / "acc.yaml").write_text("distributed_type: MULTI_GPU\nnum_processes: 2\nnum_proceses: 3\n")
    with pytest.raises(ConfigError) as e:
        plan(tmp_path, gen("launch: {config_file: acc.yaml}"))
    assert "acc.yaml:3: unknown accelerate config field 'num_proceses'" in str(e.value)
    with pytest.raises(ConfigError, match="config_file 'missing.yaml' not found"):
        plan(tmp_path, gen("launch: {config_file: missing.yaml}"))


def test_every_shipped_accelerate_config_validates(tmp_path):
    for f in sorted(CONFIGS.glob("*.yaml")):
        p = plan(tmp_path, train_only(f"launch: {{config_file: {f}}}"))
        assert p.stages[0].launch.num_processes >= 2, f


def test_sampling_under_sharded_launches_needs_vllm(tmp_path):
    """Under DeepSpeed ZeRO-3 every model transformers loads is partitioned; under podium's FSDP2 only the training
    loop shards, so a sampling stage loads its model whole."""
    with pytest.raises(ConfigError, match="r.yaml:2: stage 'gen': sampling under an FSDP / DeepSpeed ZeRO-3 launch "
                                          "needs backend: vllm"):
        plan(tmp_path, gen(f"launch: {{config_file: {CONFIGS / 'deepspeed_zero3.yaml'}}}"))
    fsdp = plan(tmp_path, gen(f"launch: {{config_file: {CONFIGS / 'fsdp.yaml'}}}"))
    assert fsdp.stages[0].launch.sharded is True and fsdp.stages[0].launch.fsdp is not None
    ok = plan(tmp_path, gen(f"launch: {{config_file: {CONFIGS / 'multi_gpu_ddp.yaml'}}}"))
    assert ok.stages[0].launch.sharded is False


def test_launch_on_a_light_stage_or_a_machine_rank_on_a_stage_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="kind 'eval' runs in one process"):
        plan(tmp_path, "stages:\n  - {name: e, kind: eval, model: m, task: arithmetic, count: 2, launch: {num_processes: 2}}\n")
    with pytest.raises(ConfigError, match="machine_rank belongs to the recipe"):
        plan(tmp_path, gen(stage_launch=", launch: {num_processes: 2, machine_rank: 1}"))


def test_vllm_parallelism_must_fit_the_launch(tmp_path):
    text = "stages:\n  - {name: g, kind: generate, model: m, prompts: p.jsonl, backend: vllm, %s}\n"
    with pytest.raises(ConfigError, match=r"num_processes \(6\) must be a multiple of tensor_parallel_size \(4\)"):
        plan(tmp_path, text % "tensor_parallel_size: 4, launch: {num_processes: 6}")
    with pytest.raises(ConfigError, match="data_parallel_size 2 needs a launch of"):
        plan(tmp_path, text % "data_parallel_size: 2")
    ok = plan(tmp_path, text % "tensor_parallel_size: 2, data_parallel_size: 4, launch: {num_processes: 8}")
    assert ok.stages[0].launch.num_processes == 8
    with pytest.raises(ConfigError, match="tensor_parallel_size is a setting of backend: vllm"):
        plan(tmp_path, "stages:\n  - {name: g, kind: generate, model: m, prompts: p.jsonl, tensor_parallel_size: 2}\n")


def test_world_size_enters_training_keys_only(tmp_path):
    one = {s.name: s.key for s in plan(tmp_path, gen()).stages}
    two = {s.name: s.key for s in plan(tmp_path, gen("launch: {num_processes: 2}")).stages}
    four = {s.name: s.key for s in plan(tmp_path, gen("launch: {num_processes: 4}")).stages}
    assert one["gen"] == two["gen"] == four["gen"]  # samples do not depend on the process count
    assert len({one["dpo"], two["dpo"], four["dpo"]}) == 3  # the global batch does
    assert one["ev"] == two["ev"]


def test_cpu_launch_command(tmp_path, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    p = plan(tmp_path, gen("launch: {num_processes: 2}"))
    s = p.stages[0]
    argv, env = launch_command(s.launch, s.out_dir, p.run_dir, show_progress=False)
    assert env == {"ACCELERATE_USE_CPU": "1"}  # gloo on CPU, set for the child
    assert argv[1] == "launch" and Path(argv[0]).name == "accelerate"
    line = " ".join(argv[2:])
    assert line.startswith("--multi_gpu --num_processes 2 --num_machines 1 --main_process_port 0 --mixed_precision no "
                           "--dynamo_backend no -m podium.cli.worker")
    assert argv[-6:] == [str(s.out_dir), "--run-dir", str(p.run_dir), "--timeout", "1800", "--no-progress"]
    assert format_command(argv, env).startswith("ACCELERATE_USE_CPU=1 ")


def test_config_file_command_keeps_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    p = plan(tmp_path, gen(f"launch: {{config_file: {CONFIGS / 'multi_gpu_ddp.yaml'}, num_processes: 4}}"))
    s = p.stages[0]
    argv, env = launch_command(s.launch, s.out_dir, p.run_dir)
    assert env == {}
    assert argv[2:6] == ["--config_file", str(CONFIGS / "multi_gpu_ddp.yaml"), "--num_processes", "4"]


def test_environment_problems(tmp_path, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    too_many = plan(tmp_path, gen("launch: {num_processes: 8}")).stages[0].launch
    (problem,) = environment_problems(too_many)
    assert "r.yaml:2: stage 'gen'" in problem and "8 processes per machine" in problem and "2 CPU cores" in problem
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    ds = plan(tmp_path, train_only(f"launch: {{config_file: {CONFIGS / 'deepspeed_zero3.yaml'}, num_processes: 2}}"))
    problems = environment_problems(ds.stages[0].launch)
    assert any("uses DeepSpeed, which is not installed: pip install 'podium[gpu]'" in p for p in problems)
    assert any("DEEPSPEED runs on GPUs only" in p for p in problems)


def test_environment_is_checked_before_any_stage_runs(tmp_path, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    text = """\
    stages:
      - {name: base, kind: tiny_model, hidden_size: 8, intermediate_size: 16, num_layers: 1, num_heads: 2}
      - {name: sft, kind: sft, model: "@base", data: [{task: arithmetic, count: 8}], launch: {num_processes: 4096}}
    """
    p = plan(tmp_path, text)
    with pytest.raises(ConfigError, match="4096 processes per machine"):
        run_plan(p, show_progress=False)
    assert not (tmp_path / "run" / "base").exists()  # nothing ran


def test_dry_run_prints_each_launch_command(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    path = recipe(tmp_path, gen("launch: {num_processes: 2}"))
    for name in ("p.jsonl", "pairs.jsonl"):  # the dry run also checks that local inputs exist
        (tmp_path / name).write_text('{"prompt": "1+1=", "chosen": "2", "rejected": "3"}\n')
    assert run_main([path, "--dry-run", "--output", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "[gen] 2 processes: ACCELERATE_USE_CPU=1 " in out and "-m podium.cli.worker" in out
    assert f"{tmp_path / 'run' / 'dpo'} --run-dir" in out
    assert "[ev]" not in out


def test_fsdp_launch_is_podiums_fsdp2_on_plain_ranks(tmp_path, monkeypatch):
    """`fsdp: true`, or accelerate's FSDP config: accelerate starts plain ranks (--multi_gpu) and the ranks get
    podium's FSDP2 settings in PODIUM_FSDP; on CPU it is allowed (podium shards over gloo)."""
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    p = plan(tmp_path, train_only("launch: {num_processes: 2, fsdp: {cpu_offload: true}}"))
    spec = p.stages[0].launch
    assert spec.distributed_type == "FSDP" and spec.sharded and spec.fsdp.cpu_offload
    argv, env = launch_command(spec, p.stages[0].out_dir, p.run_dir)
    assert json.loads(env["PODIUM_FSDP"]) == {"activation_checkpointing": False, "cpu_offload": True,
                                              "mixed_precision": "no", "rank_local_load": True,
                                              "reshard_after_forward": True}
    assert "--multi_gpu" in argv and not any(a.startswith("--fsdp") or a == "--use_fsdp" for a in argv)
    assert environment_problems(spec) == []
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("torch.cuda.device_count", lambda: 8)
    p = plan(tmp_path, train_only(f"launch: {{config_file: {CONFIGS / 'fsdp.yaml'}}}"))
    spec = p.stages[0].launch
    assert spec.fsdp.mixed_precision == "bf16" and spec.fsdp.reshard_after_forward and not spec.fsdp.cpu_offload
    assert spec.fsdp.rank_local_load  # fsdp_cpu_ram_efficient_loading: true
    whole = plan(tmp_path, train_only("launch: {num_processes: 2, fsdp: {rank_local_load: false}}"))
    assert not whole.stages[0].launch.fsdp.rank_local_load
    argv, env = launch_command(spec, p.stages[0].out_dir, p.run_dir)
    assert argv[2:5] == ["--config_file", str(CONFIGS / "fsdp.yaml"), "--multi_gpu"] and "PODIUM_FSDP" in env
    with pytest.raises(ConfigError, match="fsdp: unknown option 'offload'"):
        plan(tmp_path, train_only("launch: {num_processes: 2, fsdp: {offload: true}}"))
    with pytest.raises(ConfigError, match="FSDP2 takes mixed_precision bf16 or no"):
        plan(tmp_path, train_only("launch: {num_processes: 2, fsdp: true, mixed_precision: fp16}"))


def test_training_key_holds_the_global_batch_not_its_split(tmp_path):
    """2 processes x accumulation 1, 1 launched process x 2 and in-process x 2 are one stage (a checkpoint of one
    resumes in another); another global batch, or DeepSpeed's numerics, is another stage."""
    def key(launch, accumulation):
        text = train_only(launch).replace("data: pairs.jsonl", f"data: pairs.jsonl, gradient_accumulation_steps: {accumulation}")
        return plan(tmp_path, text).stages[0].key

    two = key("launch: {num_processes: 2, fsdp: true}", 1)
    assert two == key("launch: {num_processes: 2}", 1) == key("launch: {num_processes: 1}", 2) == key("", 2)
    assert two != key("launch: {num_processes: 2}", 2)
    assert two != key(f"launch: {{config_file: {CONFIGS / 'deepspeed_zero3.yaml'}, num_processes: 2}}", 1)
