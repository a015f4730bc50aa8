"""Output weights: shard layout, and safetensors files written tensor by tensor while the merge computes.

The plan fixes every output tensor's name, dtype and shape, so each shard's safetensors header
is known before the first tensor exists; tensors are appended as they are merged and memory
stays near one output tensor (plus what the writer thread has not flushed yet). A tensor that
passes through unchanged is copied from its input file by the kernel (copy_file_range), never
entering the process.
"""

from __future__ import annotations

import errno
import json
import os
import queue
import struct
import threading
from pathlib import Path

import torch

from podium.merging.plan import TensorTask
from podium.models.dtypes import SAFETENSORS_CODES, nbytes


def shard_layout(tasks: list[TensorTask], max_bytes: int) -> list[tuple[str, list[TensorTask]]]:
    """Consecutive tasks grouped into shards of at most `max_bytes` (one oversize tensor gets its own),
    with transformers' file names: `model.safetensors` or `model-0000i-of-0000n.safetensors`."""
    shards: list[list[TensorTask]] = []
    cur: list[TensorTask] = []
    size = 0
    for t in tasks:
        if cur and size + t.nbytes > max_bytes:
            shards.append(cur)
            cur, size = [], 0
        cur.append(t)
        size += t.nbytes
    if cur:
        shards.append(cur)
    if len(shards) == 1:
        return [("model.safetensors", shards[0])]
    return [(f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors", s) for i, s in enumerate(shards)]


def write_index(folder: Path, layout: list[tuple[str, list[TensorTask]]]) -> None:
    """`model.safetensors.index.json` for a sharded output (nothing for one file)."""
    if len(layout) < 2:
        return
    weight_map = {t.out_name: fname for fname, shard in layout for t in shard}
    total = sum(t.nbytes for _, shard in layout for t in shard)
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))


class ShardWriter:
    """One safetensors file whose header is known in advance, filled tensor by tensor."""

    def __init__(self, path: Path, entries: list[tuple[str, torch.dtype, tuple[int, ...]]]):
        header: dict = {"__metadata__": {"format": "pt"}}
        offset = 0
        for name, dtype, shape in entries:
            n = nbytes(shape, dtype)
            header[name] = {"dtype": SAFETENSORS_CODES[dtype], "shape": list(shape), "data_offsets": [offset, offset + n]}
            offset += n
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        self.expected = [(name, dtype, tuple(shape)) for name, dtype, shape in entries]
        self.pos = 0
        self.file = open(path, "wb", buffering=0)  # noqa: SIM115 - closed by close(); tensors arrive one by one
        self.file.write(struct.pack("<Q", len(raw)) + raw)

    def write(self, name: str, tensor: torch.Tensor) -> None:
        exp = self.expected[self.pos]
        if (name, tensor.dtype, tuple(tensor.shape)) != exp:
            raise RuntimeError(f"merge produced {name} {tensor.dtype} {tuple(tensor.shape)}, planned {exp}")
        view = memoryview(tensor.contiguous().reshape(-1).view(torch.uint8).numpy())
        while view:  # a raw write may take fewer bytes than given
            view = view[self.file.write(view):]
        self.pos += 1

    def copy(self, name: str, dtype: torch.dtype, shape: tuple[int, ...], source: Path, offset: int) -> None:
        """Append a stored tensor's bytes straight from its input file (a passthrough tensor: no decode, no buffer)."""
        exp = self.expected[self.pos]
        if (name, dtype, tuple(shape)) != exp:
            raise RuntimeError(f"merge produced {name} {dtype} {tuple(shape)}, planned {exp}")
        left = nbytes(shape, dtype)
        with open(source, "rb", buffering=0) as src:
            while left:
                n = _copy_range(src.fileno(), self.file.fileno(), left, offset)
                if n == 0:
                    raise RuntimeError(f"{source} ended early while copying {name}")
                left -= n
                offset += n
        self.pos += 1

    def close(self) -> None:
        self.file.close()


def _copy_range(src: int, dst: int, count: int, offset: int) -> int:
    """Copy up to `count` bytes from `src` at `offset` to `dst`'s position: in the kernel where possible."""
    if hasattr(os, "copy_file_range"):
        try:
            return os.copy_file_range(src, dst, min(count, 1 << 30), offset)
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
                raise
    data = os.pread(src, min(count, 64 << 20), offset)
    view = memoryview(data)
    while view:
        view = view[os.write(dst, view):]
    return len(data)


class Copy:
    """A stored tensor to be written as it is: `put(name, Copy(...))` copies it file to file."""

    def __init__(self, dtype: torch.dtype, shape: tuple[int, ...], source: Path, offset: int):
        self.dtype, self.shape, self.source, self.offset = dtype, shape, source, offset


class BackgroundWriter:
    """Writes merged tensors to their shards on a thread, so the next tensor is computed meanwhile.

    `put` blocks while more than `max_pending` bytes wait to be written (memory stays bounded);
    `close` waits for the last write. A write error is raised by the next `put` or by `close`.
    """

    def __init__(self, folder: Path, layout: list[tuple[str, list[TensorTask]]], max_pending: int = 256 * 1024**2):
        self.folder, self.layout = folder, layout
        self.max_pending = max_pending
        self.pending = 0
        self.cond = threading.Condition()
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="podium-merge-writer", daemon=True)
        self.thread.start()

    def put(self, name: str, tensor: torch.Tensor | Copy) -> None:
        n = _size(tensor)
        with self.cond:
            while self.pending and self.pending + n > self.max_pending and self.error is None:
                self.cond.wait()
            self._raise()
            self.pending += n
        self.queue.put((name, tensor))

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        self._raise()

    def abort(self) -> None:
        """Stop after the current write (on an error elsewhere); the files are left to the caller."""
        with self.cond:
            self.error = self.error or RuntimeError("aborted")
        self.queue.put(None)
        self.thread.join()

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            for fname, shard in self.layout:
                writer = ShardWriter(self.folder / fname, [(t.out_name, t.out_dtype, t.shape) for t in shard])
                try:
                    for _ in shard:
                        item = self.queue.get()
                        if item is None or self.error is not None:
                            return
                        name, tensor = item
                        if isinstance(tensor, Copy):
                            writer.copy(name, tensor.dtype, tensor.shape, tensor.source, tensor.offset)
                        else:
                            writer.write(name, tensor)
                        with self.cond:
                            self.pending -= _size(tensor)
                            self.cond.notify_all()
                        del item, tensor
                finally:
                    writer.close()
            self.queue.get()  # the closing None
        except BaseException as e:  # noqa: BLE001 - handed to the merging thread
            with self.cond:
                self.error = e
                self.cond.notify_all()


def _size(item: torch.Tensor | Copy) -> int:
    """Bytes an item holds in memory while it waits (a Copy holds none)."""
    return 0 if isinstance(item, Copy) else item.numel() * item.element_size()
