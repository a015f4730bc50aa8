"""The whole training state of a checkpoint folder, in either layout: the model and optimizer (one file each, or
per-rank pieces under FSDP2: podium.training.sharded_checkpoint), the generator states, the scheduler, and
`trainer_state.json` last with every file's SHA-256 (`save_training_state`); which checkpoint is sound
(`first_sound`); and restoring it into any layout (`load_training_state`). Safetensors and JSON only."""

from __future__ import annotations

from pathlib import Path

from podium.distributed.world import all_gather_json, current_world
from podium.errors import PodiumError
from podium.training.checkpoint import (
    FORMAT,
    STATE_FILE,
    VERSION,
    load_optimizer,
    load_rng,
    load_weights,
    save_optimizer,
    save_rng,
    save_weights,
    write_json_file,
)
from podium.training.sharded_checkpoint import (
    file_digest,
    index_file,
    load_into,
    param_names,
    save_sharded,
    sharded_source,
    unsharded_source,
)


def save_training_state(acc, model, optimizer, scheduler, folder: Path, extra: dict, sharded: bool = False) -> None:
    """Write the state of every process into `folder` (which exists); `trainer_state.json` comes last.

    Every process calls this (each writes its own generator state). Unsharded (one process, DDP): the main
    process writes the model and the optimizer (replicated). `sharded` (FSDP2): every process writes its
    own pieces (podium.training.sharded_checkpoint). Each process hashes the files it wrote; the main
    process writes `trainer_state.json` with `extra`, the layout, the world size and every file's SHA-256.
    """
    rank = acc.process_index
    written = []
    if sharded:
        written += save_sharded(model, optimizer, folder, rank)
    elif acc.is_main_process:
        save_weights(acc.unwrap_model(model), folder)
        save_optimizer(optimizer, folder)
        written += ["model.safetensors", "optimizer.safetensors", "optimizer.json"]
    save_rng(folder, rank)
    written += [f"rng-{rank}.safetensors", f"rng-{rank}.json"]
    digests = {name: file_digest(folder / name) for name in written}
    files: dict[str, str] = {}
    for part in all_gather_json(digests, current_world()):
        files.update(part)
    acc.wait_for_everyone()
    if acc.is_main_process:
        scaler = getattr(acc, "scaler", None)
        state = {"format": FORMAT, "version": VERSION, **extra, "scheduler": scheduler.state_dict(),
                 "scaler": scaler.state_dict() if scaler is not None else None,
                 "layout": "sharded" if sharded else "full", "world": acc.num_processes, "files": files}
        write_json_file(folder / STATE_FILE, state)


def checkpoint_problem(folder: Path, state: dict) -> str | None:
    """Why the checkpoint in `folder` cannot be used (a file missing, or not matching its digest), or None.

    Every process checks its share of the files (file i on process i % world) and all agree on the answer.
    A checkpoint of an older podium lists no digests: only its files' presence is checked.
    """
    world = current_world()
    files = state.get("files")
    if state.get("layout") == "sharded":
        expected = [index_file(r) for r in range(int(state.get("world") or 0))]
    else:
        expected = ["model.safetensors", "optimizer.safetensors", "optimizer.json"]
    mine = None
    names = sorted(files) if isinstance(files, dict) else expected
    for i, name in enumerate(sorted(set(names) | set(expected))):
        if i % world.size != world.rank:
            continue
        path = folder / name
        if not path.is_file() or path.is_symlink():
            mine = mine or f"{name} is missing"
        elif isinstance(files, dict) and name not in files:
            mine = mine or f"{name} is not listed in {STATE_FILE}"
        elif isinstance(files, dict) and file_digest(path) != files[name]:
            mine = mine or f"{name} does not match its checksum (truncated, edited or damaged)"
    problems = [p for p in all_gather_json(mine, world) if p]
    return problems[0] if problems else None


def load_training_state(acc, model, optimizer, scheduler, folder: Path, state: dict, log=None,
                        sharded: bool = False) -> None:
    """Restore what `save_training_state` wrote, into any layout (reads safetensors and JSON only, never pickle).

    The same layout as written, unsharded: the files load as they are. Otherwise (a sharded checkpoint, or
    a sharded run) each process reads its own part of every tensor from the stored pieces, whatever the
    world size that wrote them (podium.training.sharded_checkpoint).
    """
    if state.get("layout") == "sharded" or sharded:
        unwrapped = acc.unwrap_model(model)
        if state.get("layout") == "sharded":
            source = sharded_source(folder, state)
        else:
            names = param_names(unwrapped)
            source = unsharded_source(folder, unwrapped, [names[id(p)] for g in optimizer.param_groups
                                                          for p in g["params"]])
        load_into(source, unwrapped, optimizer)
        if log and acc.is_main_process and state.get("world") != acc.num_processes:
            log.info(f"{folder}: written by {state.get('world')} process(es), resharded for {acc.num_processes}")
    else:
        load_weights(acc.unwrap_model(model), folder)
        load_optimizer(optimizer, folder)
    try:
        scheduler.load_state_dict(dict(state["scheduler"]))
    except (KeyError, TypeError, ValueError) as e:
        raise PodiumError(f"{folder}: scheduler state is damaged ({e})") from None
    scaler = getattr(acc, "scaler", None)
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    load_rng(folder, acc.process_index, log)


def first_sound(found: list[tuple[int, Path, dict]], log=None) -> tuple[int, Path, dict] | None:
    """The newest of `found` (newest first, as `resumable_checkpoints` gives them) whose files all verify
    (`checkpoint_problem`); a damaged one is passed over with a log line naming what is wrong. Every process
    calls this and all get the same answer."""
    for i, (step, path, state) in enumerate(found):
        problem = checkpoint_problem(path, state)
        if problem is None:
            return step, path, state
        if log:
            earlier = f"trying {found[i + 1][1].name}" if i + 1 < len(found) else "no earlier checkpoint: starting over"
            log.warning(f"checkpoint {path} is damaged ({problem}); {earlier}")
    return None
