"""Running a merge: plan, then read, merge and write one tensor at a time into an atomically published folder.

Three threads share the work: a reader fetches the next tensors' inputs (plain positional reads
into fresh buffers), the calling thread merges, and a writer appends finished tensors to their
shards. Reads and writes release the GIL, so on two cores the I/O
hides behind the math. Memory stays near one tensor per input plus one output (each queue is
bounded in bytes). Tensors that pass through unchanged are copied file to file by the kernel.

The output appears only complete: everything is written into a temp folder beside `out_dir`
and swapped in with one rename (`podium.models.publish`); the output path is checked before
any tensor is computed.

Entry points: `run_merge(cfg, out_dir)` for a mergekit config, `merge_lora(base, adapter, out_dir)`
for folding a LoRA adapter into its base.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from podium.errors import PodiumError
from podium.merging.config import MergeConfig, parse_config
from podium.merging.outputs import tokenizer_source, write_extras
from podium.merging.plan import MergePlan, TensorTask, plan_merge
from podium.merging.reader import ModelSource
from podium.merging.writer import BackgroundWriter, Copy, shard_layout, write_index
from podium.models.publish import MODEL_FILES, check_writable, staging

log = logging.getLogger("podium.merge")

READ_AHEAD_BYTES = 256 * 1024**2


def run_merge(cfg: MergeConfig, out_dir: str | os.PathLike, *, seed: int | None = None,
              max_shard_size: int = 2 * 1024**3, progress: bool = False) -> dict:
    """Merge per `cfg` into `out_dir` (a transformers folder). Returns metrics for report.json.

    A config or model mistake, or an output path that cannot be written, raises a PodiumError
    before any tensor is computed; on any error `out_dir` is left as it was.
    """
    start = time.perf_counter()
    check_writable(out_dir)
    models: dict[str, ModelSource] = {}
    try:
        for ref in cfg.referenced_models():
            models[ref] = ModelSource(ref)
        plan = plan_merge(cfg, models)
        tokenizer = tokenizer_source(cfg, plan)
        layout = shard_layout(plan.tasks, max_shard_size)
        seed = seed if seed is not None else (cfg.random_seed or 0)
        with staging(out_dir, stale_globs=MODEL_FILES) as tmp:
            merge_tensors(plan, cfg, layout, tmp, seed, progress)
            write_index(tmp, layout)
            write_extras(cfg, plan, tmp, tokenizer)
    finally:
        for m in models.values():
            m.close()
    return {"merge_seconds": time.perf_counter() - start, "num_tensors": float(len(plan.tasks)),
            "num_layers": float(plan.num_layers)}


def merge_problem(cfg: MergeConfig) -> str | None:
    """What would stop `cfg` when it runs, found from the input models' headers and configs only (layer ranges
    past a model's layers, missing tensors, shapes, architectures), or None; inputs that are not local
    folders yet (an earlier stage's output, a Hub id) are not checked."""
    refs = cfg.referenced_models()
    if not all(Path(part).expanduser().is_dir() for ref in refs for part in ref.split("+")):
        return None
    models: dict[str, ModelSource] = {}
    try:
        for ref in refs:
            models[ref] = ModelSource(ref)
        plan_merge(cfg, models)
    except PodiumError as e:
        return str(e)
    finally:
        for m in models.values():
            m.close()
    return None


def merge_lora(base: str | os.PathLike, adapter: str | os.PathLike, out_dir: str | os.PathLike,
               dtype: str | None = None, *, max_shard_size: int = 2 * 1024**3, progress: bool = False) -> dict:
    """Fold a PEFT LoRA adapter into its base model (W + s·BA per weight) and write a transformers folder.

    The one LoRA-merge path: the merge stage and `podium merge --lora-adapter` both call it.
    `dtype` (float32, bfloat16, ...) is the dtype the weights are computed and saved in.
    """
    raw = {"merge_method": "passthrough", "models": [{"model": f"{base}+{adapter}"}], "tokenizer_source": "base"}
    if dtype:
        raw["dtype"] = dtype
    return run_merge(parse_config(raw, origin="lora merge"), out_dir, max_shard_size=max_shard_size, progress=progress)


def merge_tensors(plan: MergePlan, cfg: MergeConfig, layout, folder, seed: int, progress: bool = False) -> None:
    """Compute every planned tensor in order and hand it to a background writer of `layout`'s shards."""
    writer = BackgroundWriter(folder, layout)
    copies = {id(task): stored_copy(task, cfg) for task in plan.tasks}
    try:
        for index, (task, tensors) in enumerate(read_ahead(plan.tasks, skip=lambda t: copies[id(t)] is not None)):
            if copies[id(task)] is not None:
                writer.put(task.out_name, copies[id(task)])
                continue
            rng = tensor_rng(seed, index) if cfg.method.random else None
            out = merge_tensor(task, cfg.method.fn, tensors, rng)
            del tensors  # free the inputs now, not when the next task's arrive
            writer.put(task.out_name, out)
            del out  # the writer frees it once written
            if progress and (index + 1) % 50 == 0:
                log.info("merged %d/%d tensors", index + 1, len(plan.tasks))
        writer.close()
    except BaseException:
        writer.abort()
        raise


def merge_tensor(task: TensorTask, fn, tensors: list[torch.Tensor],
                 rng: np.random.Generator | None = None) -> torch.Tensor:
    """One output tensor from its inputs (which `fn` may overwrite: they are read for this task only)."""
    if task.in_dtype is not None:
        tensors = [x.to(task.in_dtype) for x in tensors]
    out = fn(tensors, task.base_index, task.shared, task.per_input, rng).to(task.out_dtype)
    if not bool(torch.isfinite(out).all()):  # NaN or inf: a model that exits 0 and scores garbage
        inputs = ", ".join(f"{model.ref}:{name}" for model, name in task.inputs)
        raise PodiumError(f"merged tensor {task.out_name} has NaN or infinite values (from {inputs} with parameters "
                          f"{task.shared} {task.per_input}: non-finite inputs, or weights summing to 0 with normalize?); "
                          "nothing was written")
    return out


def stored_copy(task: TensorTask, cfg: MergeConfig) -> Copy | None:
    """A Copy when the output is one input's stored bytes as they are (passthrough, no scale, LoRA or cast)."""
    if cfg.method.name != "passthrough" or task.per_input[0].get("scale") is not None:
        return None
    model, name = task.inputs[0]
    shape, dtype = model.meta[name]
    if model.lora is not None or dtype != task.out_dtype or task.in_dtype not in (None, dtype):
        return None
    file, offset, _ = model.location(name)
    return Copy(dtype, shape, file, offset)


def tensor_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of the index-th output tensor (DARE's drop): fixed by (seed, index) alone."""
    return np.random.default_rng([seed % 2**64, index])


def read_ahead(tasks: list[TensorTask], max_bytes: int = READ_AHEAD_BYTES,
               skip=lambda task: False) -> Iterator[tuple[TensorTask, list | None]]:
    """Yield (task, its input tensors) in order, read by a thread that stays up to `max_bytes` ahead.

    One task is always allowed in flight, however large. Tasks for which `skip(task)` is true
    are yielded with None (nothing read). A read error is raised here, in order.
    """
    ready: queue.Queue = queue.Queue()
    state = {"ahead": 0, "stop": False}
    lock = threading.Condition()

    def read() -> None:
        for task in tasks:
            if skip(task):
                ready.put((task, None, None))
                continue
            n = task.input_nbytes
            with lock:
                while state["ahead"] and state["ahead"] + n > max_bytes and not state["stop"]:
                    lock.wait()
                if state["stop"]:
                    return
                state["ahead"] += n
            try:
                ready.put((task, [m.get(name) for m, name in task.inputs], None))
            except BaseException as e:  # noqa: BLE001 - raised in the consuming thread
                ready.put((task, None, e))
                return

    thread = threading.Thread(target=read, name="podium-merge-reader", daemon=True)
    thread.start()
    try:
        for _ in tasks:
            task, tensors, error = ready.get()
            if error is not None:
                raise error
            yield task, tensors
            if tensors is None:
                continue
            tensors = None  # the consumer is done with them: no reference kept while waiting for the next
            with lock:
                state["ahead"] -= task.input_nbytes
                lock.notify_all()
    finally:
        with lock:
            state["stop"] = True
            lock.notify_all()
        thread.join()
