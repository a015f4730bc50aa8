"""The `launch:` spec of a recipe or a stage: which stages run as `accelerate launch` children, and how.

    launch:                         # recipe level: applies to every stage kind that can run distributed
      config_file: ../configs/accelerate/deepspeed_zero3.yaml   # optional accelerate config (beside the recipe)
      num_processes: 8              # any `accelerate launch` argument, by its name
      timeout: 1800                 # podium's own: seconds a rank may wait for the others
      fsdp: true                    # podium's own: shard training stages with FSDP2 (podium.distributed.fsdp),
                                    # or {cpu_offload: true, reshard_after_forward: true, activation_checkpointing: false}
      gpu_memory_gb: 80             # podium's own: memory per GPU, for the estimate printed before a run
    stages:
      - {name: dpo, kind: train, ..., launch: {num_processes: 2}}   # stage level: merged over the recipe's
      - {name: eval, kind: eval, ...}                                # light stages run in-process
      - {name: sft, kind: sft, ..., launch: null}                    # this stage in-process after all

Checked when the recipe is planned (errors name file:line): every key is `config_file`, `timeout` or a
destination of accelerate's own `accelerate launch` parser, with a value of that argument's type; the
config file exists and holds only fields of accelerate's `ClusterConfig`; process and machine counts
agree. Checked before the first stage runs (`environment_problems`): no more processes per machine
than it has GPUs (or CPU cores, without CUDA), and DeepSpeed installed when the config uses it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from podium.config import Located
from podium.distributed.accelerate_config import (
    check_argument,
    find_config_file,
    fsdp_config_options,
    launch_arguments,
    read_config_file,
)
from podium.distributed.fsdp import FSDPSettings
from podium.errors import ConfigError

DEFAULT_TIMEOUT = 1800.0
# podium's own keys of a launch spec; every other key is an `accelerate launch` argument.
PODIUM_KEYS = ("config_file", "timeout", "fsdp", "gpu_memory_gb")
# The options of `fsdp:` (podium.distributed.fsdp.FSDPSettings, less mixed_precision: the launch's own).
FSDP_OPTIONS = ("reshard_after_forward", "cpu_offload", "activation_checkpointing", "rank_local_load")
# Only one node's podium run may set this, so it lives on the recipe, not on a stage.
NODE_KEYS = ("machine_rank",)


@dataclass
class LaunchSpec:
    """A resolved launch: accelerate arguments (by destination name) plus podium's settings.

    `where` is "file:line" of the `launch:` mapping, for errors raised later (environment checks).
    """

    where: str
    stage: str
    args: dict[str, Any] = field(default_factory=dict)
    config_file: Path | None = None
    file_config: dict = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT
    fsdp_options: dict | None = None  # `fsdp:` as written (None: not set)
    gpu_memory_gb: float | None = None  # memory per device for the estimate `podium run` prints (podium.training.memory)

    def setting(self, name: str, default=None):
        """An accelerate setting: the override, else the config file's, else `default`."""
        if name in self.args:
            return self.args[name]
        return self.file_config.get(name, default)

    @property
    def num_processes(self) -> int:
        return int(self.setting("num_processes"))

    @property
    def num_machines(self) -> int:
        return int(self.setting("num_machines", 1))

    @property
    def machine_rank(self) -> int:
        return int(self.setting("machine_rank", 0))

    @property
    def mixed_precision(self) -> str:
        return str(self.setting("mixed_precision") or "no")

    @property
    def fsdp(self) -> FSDPSettings | None:
        """podium's FSDP2 settings when this launch shards with FSDP: `fsdp:` in the launch, `use_fsdp`, or an
        accelerate config whose distributed_type is FSDP (its fsdp_config read by podium)."""
        if self.fsdp_options is not None:
            if self.fsdp_options is False:
                return None
            options = dict(self.fsdp_options) if isinstance(self.fsdp_options, dict) else {}
        elif self.args.get("use_fsdp") or str(self.file_config.get("distributed_type", "")).upper() == "FSDP":
            options = fsdp_config_options({**(self.file_config.get("fsdp_config") or {}),
                                           **{k: v for k, v in self.args.items() if k.startswith("fsdp_")}})
        else:
            return None
        if self.args.get("use_deepspeed"):
            return None
        return FSDPSettings(mixed_precision=self.mixed_precision, **options)

    @property
    def distributed_type(self) -> str:
        """NO, MULTI_GPU, FSDP, DEEPSPEED, ... as accelerate names it (FSDP: podium's FSDP2)."""
        if self.fsdp is not None:
            return "FSDP"
        if self.args.get("use_deepspeed"):
            return "DEEPSPEED"
        if self.args.get("use_fsdp"):
            return "FSDP"
        if self.args.get("multi_gpu"):
            return "MULTI_GPU"
        kind = self.file_config.get("distributed_type")
        if kind:
            return str(kind).upper()
        return "MULTI_GPU" if self.num_processes > 1 else "NO"

    @property
    def sharded(self) -> bool:
        """Whether no rank holds the whole model (FSDP, or DeepSpeed ZeRO stage 3)."""
        if self.distributed_type == "FSDP":
            return True
        if self.distributed_type == "DEEPSPEED":
            stage = self.args.get("zero_stage", (self.file_config.get("deepspeed_config") or {}).get("zero_stage"))
            return stage == 3
        return False

    @property
    def on_cpu(self) -> bool:
        """Whether the ranks run on CPU (no CUDA here, or the spec asks for the CPU)."""
        return bool(self.args.get("cpu") or self.file_config.get("use_cpu")) or not torch.cuda.is_available()

    @property
    def sharding(self) -> str:
        """How a training stage of this launch holds its model, in words (printed by `podium run --dry-run`)."""
        if self.fsdp is not None:
            return "FSDP2 (podium)" + (", CPU offload" if self.fsdp.cpu_offload else "")
        if self.distributed_type == "DEEPSPEED":
            ds = self.file_config.get("deepspeed_config") or {}
            stage = self.args.get("zero_stage", ds.get("zero_stage"))
            offload = self.setting("offload_optimizer_device", ds.get("offload_optimizer_device"))
            return (f"DeepSpeed ZeRO-{stage} (accelerate)" + (f", optimizer offload to {offload}"
                                                             if offload not in (None, "none") else ""))
        return "replicated (DDP)" if self.num_processes > 1 else "one process"


def train_key(spec: LaunchSpec | None, config: dict) -> tuple[dict, dict]:
    """(config, launch part) of a training stage's key (`spec` None: the stage runs in-process, one process).

    The global batch is batch_size x gradient_accumulation_steps x processes; the last two enter the key as
    their product, so a stage continued on another number of processes with the accumulation that keeps the
    global batch (8 x 1 -> 4 x 2, or 2 x 1 -> in-process x 2) has the same key and resumes from its checkpoint, resharded
    (podium.training.sharded_checkpoint). DDP and podium's FSDP2 compute the same updates (to float rounding);
    DeepSpeed's numerics are its own and enter the key.
    """
    config = dict(config)
    holder = config if "gradient_accumulation_steps" in config else dict(config.get("train") or {})
    accumulation = int(holder.get("gradient_accumulation_steps") or 1)
    holder.pop("gradient_accumulation_steps", None)
    if holder is not config and "train" in config:
        config["train"] = holder
    processes, mixed = (spec.num_processes, spec.mixed_precision) if spec is not None else (1, "no")
    engine = "deepspeed" if spec is not None and spec.distributed_type == "DEEPSPEED" else "torch"
    part = {"process_batches": processes * accumulation, "mixed_precision": mixed, "engine": engine}
    return config, part


def merged_launch(recipe_launch: Any, stage_raw: dict) -> tuple[dict | None, bool]:
    """The stage's launch mapping (the recipe's, with the stage's keys over it) and whether the stage named one."""
    named = "launch" in stage_raw
    stage_launch = stage_raw.get("launch")
    if named and (stage_launch is None or stage_launch is False):
        return None, True  # `launch: null` or `launch: false`: this stage runs in-process
    if recipe_launch is None and not named:
        return None, False
    merged = dict(recipe_launch or {})
    if named:
        if not isinstance(stage_launch, dict):
            return {"__invalid__": stage_launch}, True
        merged.update(stage_launch)
    return merged, named


def resolve_launch(recipe_launch: Any, stage_raw: dict, *, kind: str, distributed: bool, located: Located,
                   base: tuple, name: str) -> LaunchSpec | None:
    """The LaunchSpec of one stage of a recipe, or None when it runs in-process; ConfigErrors name file:line."""
    raw, named = merged_launch(recipe_launch, stage_raw)
    where = located.where(base + ("launch",)) if named else located.where(("launch",))
    if raw is None:
        return None
    if not distributed:
        if named:
            raise ConfigError(f"{where}: stage {name!r}: kind {kind!r} runs in one process; launch: applies to "
                              "sft, train, generate, sgd and selfplay stages")
        return None
    if "__invalid__" in raw:
        raise ConfigError(f"{where}: stage {name!r}: launch must be a mapping (or null to run in-process), "
                          f"got {raw['__invalid__']!r}")
    if named and isinstance(stage_raw.get("launch"), dict):
        for key in NODE_KEYS:
            if key in stage_raw["launch"]:
                raise ConfigError(f"{where}: stage {name!r}: launch: {key} belongs to the recipe's launch "
                                  f"(one value per node: `podium run RECIPE launch.{key}=N`)")
    return build_spec(raw, where, name, located.path)


def build_spec(raw: dict, where: str, stage: str, recipe_path: str) -> LaunchSpec:
    """Check a launch mapping and turn it into a LaunchSpec."""
    arguments = launch_arguments()
    spec = LaunchSpec(where=where, stage=stage)
    for key, value in raw.items():
        if key == "config_file":
            if value is not None:
                spec.config_file = find_config_file(value, recipe_path, where)
                spec.file_config = read_config_file(spec.config_file, where)
        elif key == "gpu_memory_gb":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"{where}: launch: gpu_memory_gb must be a number of GB > 0, got {value!r}")
            spec.gpu_memory_gb = float(value)
        elif key == "fsdp":
            spec.fsdp_options = check_fsdp(value, where)
        elif key == "timeout":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"{where}: launch: timeout must be a number of seconds > 0, got {value!r}")
            spec.timeout = float(value)
        elif key in arguments:
            spec.args[key] = check_argument(key, value, arguments[key], where)
        else:
            close = difflib.get_close_matches(str(key), [*PODIUM_KEYS, *arguments], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: stage {stage!r}: launch: unknown key {key!r}{hint}; a launch takes "
                              "config_file, timeout and the arguments of `accelerate launch` (accelerate launch --help)")
    check_counts(spec)
    return spec


def check_fsdp(value: Any, where: str) -> dict | bool:
    """`fsdp: true | false | {option: bool, ...}` of a launch, checked."""
    if isinstance(value, bool):
        return {} if value else False
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: launch: fsdp is true, false or a mapping of {', '.join(FSDP_OPTIONS)}, got {value!r}")
    for k, v in value.items():
        if k not in FSDP_OPTIONS:
            close = difflib.get_close_matches(str(k), FSDP_OPTIONS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: launch: fsdp: unknown option {k!r}{hint}; options: {', '.join(FSDP_OPTIONS)}")
        if not isinstance(v, bool):
            raise ConfigError(f"{where}: launch: fsdp: {k} is true or false, got {v!r}")
    return dict(value)


def check_counts(spec: LaunchSpec) -> None:
    where = spec.where
    if spec.setting("num_processes") in (None, -1):
        raise ConfigError(f"{where}: stage {spec.stage!r}: launch: num_processes is not set (in launch: or its "
                          "config_file); it is the total number of processes over all machines")
    n, machines, rank = spec.num_processes, spec.num_machines, spec.machine_rank
    if n < 1 or machines < 1:
        raise ConfigError(f"{where}: launch: num_processes and num_machines must be >= 1, got {n} and {machines}")
    if spec.fsdp is not None and spec.mixed_precision not in ("no", "bf16"):
        raise ConfigError(f"{where}: launch: podium's FSDP2 takes mixed_precision bf16 or no, got "
                          f"{spec.mixed_precision!r} (fp16 would need loss scaling of sharded gradients)")
    if spec.fsdp is not None and spec.args.get("use_deepspeed"):
        raise ConfigError(f"{where}: launch: fsdp and use_deepspeed are two ways to shard; choose one")
    if n % machines:
        raise ConfigError(f"{where}: launch: num_processes ({n}) must be a multiple of num_machines ({machines}): "
                          "every machine runs num_processes / num_machines of them")
    if not 0 <= rank < machines:
        raise ConfigError(f"{where}: launch: machine_rank {rank} is not in [0, num_machines={machines})")
    if machines > 1 and not spec.setting("main_process_ip"):
        raise ConfigError(f"{where}: launch: {machines} machines need main_process_ip (the address of machine 0)")


def plan_launch(recipe_launch: Any, stage_raw: dict, *, kind: str, distributed: str | None, cfg, located: Located,
                base: tuple, name: str) -> LaunchSpec | None:
    """The stage's LaunchSpec (None: in-process), checked against the stage's own settings.

    A config with `launch_problem(processes)` (sampling backends, podium.generation.backend) says
    whether its parallelism fits the launch.
    """
    spec = resolve_launch(recipe_launch, stage_raw, kind=kind, distributed=distributed is not None, located=located,
                          base=base, name=name)
    check = getattr(cfg, "launch_problem", None)
    # Under podium's FSDP2 only the training loop shards; a model a sampling stage loads is whole. Under accelerate's
    # DeepSpeed ZeRO-3 every model transformers loads is partitioned.
    sharded = bool(spec and spec.sharded and spec.fsdp is None)
    if check is not None and (problem := check(spec.num_processes if spec else 1, sharded)):
        where = spec.where if spec else located.where(base)
        raise ConfigError(f"{where}: stage {name!r}: {problem}")
    return spec
