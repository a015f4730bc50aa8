"""Run one stage on every rank: `accelerate launch ... -m podium.cli.worker STAGE_DIR`, watched by `podium run`.

The protocol between `podium run` (the parent) and the ranks, in files of the stage folder:

    STAGE_DIR/stage.json               written by the parent before the launch (podium.rundir)
    STAGE_DIR/.launch/config.json      {"name", "kind", "config"}: the stage's resolved config as set
                                       (unset fields left out, so validation sees what the recipe said)
    STAGE_DIR/.launch/error-rank<R>.json   a rank that failed: {"rank", "world", "type", "message",
                                       "traceback", "time"}; the rank then exits at once
    STAGE_DIR/.launch/result.json      {"metrics", "world"}: written by rank 0 once every rank has returned
                                       from the stage function
    STAGE_DIR/.launch/failed.json      {"message", "time"}: written by machine 0 when the stage failed, so
                                       the other machines of a multi-node run stop too (podium.distributed.follow)
    STAGE_DIR/launch.log               everything the ranks printed (also streamed to the console)

The stage is done when the launcher exits 0 and result.json is there; the parent then writes the
completion marker, as for an in-process stage. When a rank fails, torchrun stops the others; should
they still run `timeout` seconds after the first error report, podium ends the launcher's process
group. The stage's error is the first failing rank's message. The launcher dies with `podium run`
(PR_SET_PDEATHSIG on Linux) and each worker dies with its launcher (podium.distributed.worker), so a
kill -9 of `podium run` leaves no rank running and the same command resumes the stage.
"""

from __future__ import annotations

import ctypes
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from podium.distributed.accelerate_config import launch_arguments
from podium.distributed.fsdp import ENV as FSDP_ENV
from podium.distributed.spec import LaunchSpec
from podium.errors import PodiumError
from podium.rundir import read_json_object

WORKER_MODULE = "podium.cli.worker"
LAUNCH_DIR = ".launch"
RESULT_FILE = "result.json"
CONFIG_FILE = "config.json"
FAILED_FILE = "failed.json"  # machine 0's verdict when a stage failed, for the other machines
LOG_FILE = "launch.log"
# Arguments written first, in this order, so commands read the same from run to run.
ORDER = ("multi_gpu", "use_fsdp", "use_deepspeed", "num_processes", "num_machines", "machine_rank", "main_process_ip",
         "main_process_port", "same_network", "mixed_precision", "dynamo_backend")
PR_SET_PDEATHSIG = 1


def accelerate_executable() -> list[str]:
    """The `accelerate` command of this Python environment."""
    beside = Path(sys.executable).parent / "accelerate"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("accelerate")
    return [found] if found else [sys.executable, "-m", "accelerate.commands.launch"]


def launch_command(spec: LaunchSpec, stage_dir: Path, run_dir: Path, *, trust_remote_code: bool = False,
                   allow_pickle: bool = False, show_progress: bool = True) -> tuple[list[str], dict[str, str]]:
    """(argv, environment variables to add) that run stage folder `stage_dir` on every rank of `spec`.

    Without a config file, a launch of 2+ processes is DDP (`--multi_gpu`), numerics plain fp32
    (`--mixed_precision no`) and no torch.compile (`--dynamo_backend no`) unless the spec says
    otherwise. On a machine without CUDA (or with `cpu: true`) the ranks talk over gloo: torchrun
    starts them (`accelerate launch --cpu` would start one) and ACCELERATE_USE_CPU=1 keeps them on CPU.
    A single machine without a port gets a free one (`--main_process_port 0`).
    """
    args = dict(spec.args)
    env: dict[str, str] = {}
    if args.pop("cpu", False) or spec.on_cpu:
        env["ACCELERATE_USE_CPU"] = "1"
    if (fsdp := spec.fsdp) is not None:
        # podium shards with FSDP2 itself (podium.distributed.fsdp): accelerate starts plain ranks (--multi_gpu
        # overrides a config file's FSDP type), and the ranks read the settings from the environment.
        env[FSDP_ENV] = fsdp.to_env()
        args = {k: v for k, v in args.items() if k != "use_fsdp" and not k.startswith("fsdp_")}
        if spec.num_processes > 1:
            args["multi_gpu"] = True
    if spec.config_file is None:
        chosen = any(args.get(k) for k in ("multi_gpu", "use_fsdp", "use_deepspeed"))
        if not chosen and spec.num_processes > 1:
            args["multi_gpu"] = True
        args.setdefault("num_machines", 1)
        args.setdefault("mixed_precision", "no")
        args.setdefault("dynamo_backend", "no")
    args.setdefault("num_processes", spec.num_processes)
    if spec.num_machines == 1 and spec.setting("main_process_port") is None:
        args["main_process_port"] = 0
    if spec.num_machines > 1:  # accelerate needs every machine's rank, 0 included
        args["num_machines"], args["machine_rank"] = spec.num_machines, spec.machine_rank
    actions = launch_arguments()
    argv = [*accelerate_executable(), "launch"]
    if spec.config_file is not None:
        argv += ["--config_file", str(spec.config_file)]
    for name in sorted(args, key=lambda k: (ORDER.index(k) if k in ORDER else len(ORDER), k)):
        value = args[name]
        if actions[name].nargs == 0:
            if value:
                argv.append(f"--{name}")
        else:
            argv += [f"--{name}", str(value)]
    argv += ["-m", WORKER_MODULE, str(stage_dir), "--run-dir", str(run_dir), "--timeout", f"{spec.timeout:g}"]
    if trust_remote_code:
        argv.append("--trust-remote-code")
    if allow_pickle:
        argv.append("--allow-pickle")
    if not show_progress:
        argv.append("--no-progress")
    return argv, env


def format_command(argv: list[str], env: dict[str, str]) -> str:
    """The command as a shell line (environment assignments first)."""
    return " ".join([*(f"{k}={shlex.quote(v)}" for k, v in env.items()), shlex.join(argv)])


def die_with_parent() -> None:
    """Ask Linux to send SIGTERM to this process when its parent dies (no-op elsewhere)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):
            pass


def clear_launch_dir(folder: Path) -> None:
    """Remove the files of an earlier launch (podium's own names only)."""
    if folder.is_symlink():
        folder.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    for p in list(folder.glob("error-rank*.json")) + [folder / n for n in (RESULT_FILE, CONFIG_FILE, FAILED_FILE)]:
        if p.is_file() or p.is_symlink():
            p.unlink()


def read_errors(folder: Path) -> list[dict]:
    """The error reports of failed ranks, earliest first."""
    errors = [read_json_object(p) for p in folder.glob("error-rank*.json")]
    return sorted((e for e in errors if "message" in e), key=lambda e: (e.get("time", 0.0), e.get("rank", 0)))


def failure_message(stage: str, errors: list[dict], log_path: Path) -> str:
    first = errors[0]
    kind = first.get("type", "error")
    text = first["message"] if first.get("podium_error") else f"{kind}: {first['message']}"
    others = [e.get("rank") for e in errors[1:]]
    also = f"; ranks {others} failed after it" if others else ""
    return (f"stage {stage!r} failed on rank {first.get('rank')} of {first.get('world')}: {text}{also} "
            f"(output of every rank: {log_path})")


def stop_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the launcher's process group, then SIGKILL what is left after `grace` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def pump(stream, log_path: Path, echo) -> None:
    """Copy the child's output to the log file and the console as it comes (progress bars included)."""
    with open(log_path, "ab") as log:
        fd = stream.fileno()
        while chunk := os.read(fd, 1 << 16):
            log.write(chunk)
            log.flush()
            if echo is not None:
                echo.write(chunk)
                echo.flush()


def machine0_failed(folder: Path, since: float) -> str | None:
    """Machine 0's failure message for this stage, when written after `since` (a time.time())."""
    failed = read_json_object(folder / FAILED_FILE)
    return failed.get("message") if failed.get("time", 0) >= since else None


def watch(argv: list[str], env: dict, log_path: Path, folder: Path, timeout: float, echo) -> int:
    """Run the launcher; returns its exit status. Ends it `timeout` s after a rank's error if it still runs,
    at once when machine 0 reports the stage failed."""
    started = time.time()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, preexec_fn=die_with_parent)
    reader = threading.Thread(target=pump, args=(proc.stdout, log_path, echo), daemon=True)
    reader.start()
    failed_at = None
    try:
        while proc.poll() is None:
            if failed_at is None and any(folder.glob("error-rank*.json")):
                failed_at = time.monotonic()
            if failed_at is not None and time.monotonic() - failed_at > timeout or machine0_failed(folder, started):
                stop_group(proc)
                break
            time.sleep(0.1)
    except BaseException:  # Ctrl-C, or anything else that ends podium run: no rank outlives it
        stop_group(proc)
        raise
    finally:
        reader.join(timeout=5)
    return proc.wait()


def run_distributed(spec: LaunchSpec, kind: str, config, stage_dir: Path, run_dir: Path, *,
                    trust_remote_code: bool = False, allow_pickle: bool = False, show_progress: bool = True, log=None,
                    echo=None) -> dict:
    """Run stage `config` of `kind` in `stage_dir` (its stage.json written) on every rank; returns rank 0's metrics.

    On a machine whose `machine_rank` is not 0 this starts that machine's ranks only and returns {}
    (machine 0 collects the result and writes the completion marker).

    `echo` receives the ranks' output as bytes (default: this process's stdout).
    """
    stage_dir, run_dir = Path(stage_dir), Path(run_dir)
    folder = stage_dir / LAUNCH_DIR
    follower = spec.machine_rank > 0  # machine 0 prepared the folder; its rank 0 writes the result
    if not follower:
        clear_launch_dir(folder)
        write_json_report(folder / CONFIG_FILE, {"name": spec.stage, "kind": kind,
                                                 "config": config.model_dump(mode="json", by_alias=True, exclude_unset=True)})
    log_path = stage_dir / (LOG_FILE if not follower else f"launch-machine{spec.machine_rank}.log")
    argv, extra = launch_command(spec, stage_dir, run_dir, trust_remote_code=trust_remote_code,
                                 allow_pickle=allow_pickle, show_progress=show_progress)
    if log:
        n = spec.num_processes
        log.info(f"[{spec.stage}] {n} process{'es' if n != 1 else ''}: {format_command(argv, extra)}")
    env = {**os.environ, **extra, "PODIUM_PARENT_PID": str(os.getpid()),
           "COLUMNS": os.environ.get("COLUMNS", str(shutil.get_terminal_size().columns))}
    status = watch(argv, env, log_path, folder, spec.timeout,
                   echo if echo is not None else getattr(sys.stdout, "buffer", None))
    try:
        errors = read_errors(folder)
        if errors:
            raise PodiumError(failure_message(spec.stage, errors, log_path))
        if follower and status == 0:
            return {}
        result = read_json_object(folder / RESULT_FILE)
        if status != 0 or not isinstance(result.get("metrics"), dict):
            tail = log_path.read_text(errors="replace").splitlines()[-5:] if log_path.exists() else []
            raise PodiumError(f"stage {spec.stage!r}: accelerate launch exited with status {status} and no rank "
                              f"reported an error; last lines of {log_path}:\n" + "\n".join(tail))
        return result["metrics"]
    except PodiumError as e:
        if not follower:
            write_json_report(folder / FAILED_FILE, {"message": str(e), "time": time.time()})
        raise


def write_json_report(path: Path, obj: dict) -> None:
    """Write a small JSON report atomically under a name of this process (ranks never share a temp name)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, default=str))
    os.replace(tmp, path)
