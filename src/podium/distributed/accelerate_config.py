"""accelerate's side of a launch spec: the arguments of the installed `accelerate launch` (read from its own
parser) and their values checked against it, an accelerate config file found and checked against its
`ClusterConfig`, and its FSDP keys read as podium's FSDP2 options."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from accelerate.commands.config.config_args import ClusterConfig
from accelerate.commands.launch import launch_command_parser

from podium.config import load_yaml
from podium.errors import ConfigError

# Arguments podium writes itself (the script and how it is run) or that do not describe a launch.
NOT_SETTABLE = {"training_script", "training_script_args", "module", "no_python", "help", "config_file", "quiet"}


def fsdp_config_options(cfg: dict) -> dict:
    """FSDPSettings options from accelerate's fsdp_config keys (fsdp_offload_params, fsdp_reshard_after_forward
    (a bool, or FSDP1's sharding strategy name), fsdp_activation_checkpointing, fsdp_cpu_ram_efficient_loading)."""
    out = {}
    if "fsdp_offload_params" in cfg:
        out["cpu_offload"] = str(cfg["fsdp_offload_params"]).lower() in ("true", "1")
    reshard = cfg.get("fsdp_reshard_after_forward", cfg.get("fsdp_sharding_strategy"))
    if reshard is not None:
        out["reshard_after_forward"] = str(reshard).upper() in ("TRUE", "1", "FULL_SHARD", "HYBRID_SHARD")
    if "fsdp_activation_checkpointing" in cfg:
        out["activation_checkpointing"] = str(cfg["fsdp_activation_checkpointing"]).lower() in ("true", "1")
    if "fsdp_cpu_ram_efficient_loading" in cfg:  # accelerate's name for not loading the model on every rank
        out["rank_local_load"] = str(cfg["fsdp_cpu_ram_efficient_loading"]).lower() in ("true", "1")
    return out


def launch_arguments() -> dict[str, Any]:
    """accelerate's `accelerate launch` arguments (argparse actions) by destination name, the names a launch
    spec uses; read from accelerate's own parser, so they are those of the installed accelerate."""
    parser = launch_command_parser()
    return {a.dest: a for a in parser._actions if a.dest not in NOT_SETTABLE}


def check_argument(name: str, value: Any, action, where: str) -> Any:
    """`value` converted to the type of accelerate's argument `name`, or a ConfigError."""
    flag = action.nargs == 0  # store_true
    if flag:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: launch: {name} is a switch of `accelerate launch`: true or false, got {value!r}")
        return value
    if name == "mixed_precision" and value is False:
        value = "no"  # YAML 1.1 reads a bare `no` as false
    if value is None or isinstance(value, (bool, dict, list)):
        raise ConfigError(f"{where}: launch: {name} takes one value, got {value!r}")
    convert = action.type or str
    try:
        out = convert(value)
    except (TypeError, ValueError):
        out = None
    if out is None:
        raise ConfigError(f"{where}: launch: {name} must be {getattr(convert, '__name__', convert)}, got {value!r}")
    if action.choices is not None and out not in action.choices:
        raise ConfigError(f"{where}: launch: {name} must be one of {', '.join(map(str, action.choices))}, got {value!r}")
    return out


def read_config_file(path: Path, where: str) -> dict:
    """An accelerate config file as a mapping, its keys checked against accelerate's `ClusterConfig`."""
    located = load_yaml(path)
    data = located.data
    if not isinstance(data, dict):
        raise ConfigError(f"{located.where()}: an accelerate config file is a mapping of settings")
    known = set(ClusterConfig.__dataclass_fields__) | {"dynamo_backend", "fp16"}  # old keys accelerate converts
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{located.where((key,))}: unknown accelerate config field {key!r}{hint}; "
                              f"named in {where}")
    try:
        ClusterConfig(**ClusterConfig.process_config(dict(data)))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{located.where()}: not a valid accelerate config ({e}); named in {where}") from None
    if str(data.get("compute_environment", "LOCAL_MACHINE")) != "LOCAL_MACHINE":
        raise ConfigError(f"{located.where(('compute_environment',))}: podium launches on LOCAL_MACHINE compute "
                          "environments only")
    return data


def find_config_file(value: Any, recipe_path: str, where: str) -> Path:
    """A config file path as written: absolute, from the working directory, or beside the recipe."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: launch: config_file must be a path to an accelerate config YAML, got {value!r}")
    path = Path(value)
    for candidate in ([path] if path.is_absolute() else [path, Path(recipe_path).parent / path]):
        if candidate.is_file():
            return candidate.resolve()
    raise ConfigError(f"{where}: launch: config_file {value!r} not found (looked in the working directory and "
                      f"beside {recipe_path})")
