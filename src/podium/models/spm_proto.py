"""The parts of a SentencePiece model file (`spm.model`) that a tokenizer is built from, read without
sentencepiece or protobuf.

An `spm.model` is a serialized `ModelProto` (sentencepiece_model.proto, proto2): field 1 the pieces
(`piece` string = 1, `score` float = 2, `type` enum = 3: NORMAL 1, UNKNOWN 2, CONTROL 3, USER_DEFINED 4,
UNUSED 5, BYTE 6), field 2 the `TrainerSpec` (`model_type` = 3, UNIGRAM 1 by default; `byte_fallback`
= 35; `unk_id` = 40, default 0), field 3 the `NormalizerSpec` (`precompiled_charsmap` bytes = 2,
`add_dummy_prefix` = 3, default true). Only these fields are read; every other field is skipped by its
wire type, so a newer file with more fields reads the same.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

from podium.errors import PodiumError

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
UNIGRAM = 1


@dataclass
class SpmModel:
    pieces: list[tuple[str, float, int]]  # (piece, score, type) in id order
    model_type: int = UNIGRAM
    unk_id: int = 0
    byte_fallback: bool = False
    precompiled_charsmap: bytes = b""
    add_dummy_prefix: bool = True


class _Reader:
    def __init__(self, data: bytes, where: str):
        self.data, self.pos, self.where = data, 0, where

    def varint(self) -> int:
        shift = value = 0
        while True:
            if self.pos >= len(self.data):
                raise PodiumError(f"{self.where}: not a SentencePiece model (truncated varint)")
            b = self.data[self.pos]
            self.pos += 1
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value
            shift += 7
            if shift > 63:
                raise PodiumError(f"{self.where}: not a SentencePiece model (varint too long)")

    def fields(self):
        """(field number, wire type, value): varints as int, fixed32 as bytes, length-delimited as bytes."""
        while self.pos < len(self.data):
            key = self.varint()
            number, wire = key >> 3, key & 7
            if wire == 0:
                value = self.varint()
            elif wire == 1:
                value = self._take(8)
            elif wire == 2:
                value = self._take(self.varint())
            elif wire == 5:
                value = self._take(4)
            else:
                raise PodiumError(f"{self.where}: not a SentencePiece model (wire type {wire})")
            yield number, wire, value

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise PodiumError(f"{self.where}: not a SentencePiece model (field runs past the end)")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out


def _int32(v: int) -> int:
    """A proto int32 sent as a varint: negative values arrive as 64-bit two's complement."""
    return v - (1 << 64) if v >= 1 << 63 else v


def read_spm_model(path: str | os.PathLike) -> SpmModel:
    """The pieces, trainer and normalizer settings of `path` (an `spm.model` / `tokenizer.model`)."""
    where = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise PodiumError(f"{where}: cannot read ({e.strerror})") from None
    model = SpmModel(pieces=[])
    for number, wire, value in _Reader(data, where).fields():
        if number == 1 and wire == 2:
            piece, score, kind = "", 0.0, NORMAL
            for n, w, v in _Reader(value, where).fields():
                if n == 1 and w == 2:
                    piece = v.decode("utf-8")
                elif n == 2 and w == 5:
                    score = struct.unpack("<f", v)[0]
                elif n == 3 and w == 0:
                    kind = v
            model.pieces.append((piece, score, kind))
        elif number == 2 and wire == 2:
            for n, w, v in _Reader(value, where).fields():
                if n == 3 and w == 0:
                    model.model_type = v
                elif n == 35 and w == 0:
                    model.byte_fallback = bool(v)
                elif n == 40 and w == 0:
                    model.unk_id = _int32(v)
        elif number == 3 and wire == 2:
            for n, w, v in _Reader(value, where).fields():
                if n == 2 and w == 2:
                    model.precompiled_charsmap = bytes(v)
                elif n == 3 and w == 0:
                    model.add_dummy_prefix = bool(v)
    if not model.pieces:
        raise PodiumError(f"{where}: not a SentencePiece model (no pieces)")
    if not 0 <= model.unk_id < len(model.pieces):
        raise PodiumError(f"{where}: unk_id {model.unk_id} is not a piece of its {len(model.pieces)}")
    return model
