"""Frames of the host link (docs/host-link.md, sparselstm.spec.host_link): building them and reading them
back from a byte stream, and the payloads the board sends."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...spec.errors import SparseLSTMError
from ...spec.host_link import (COUNTERS_BYTES, CRC_BYTES, ERROR_BYTES, HEADER_BYTES, IDENTITY_BYTES,
                               MODEL_ID_BYTES, SYNC, WORD_BYTES, LinkErrorCode, Reply, crc16)

__all__ = ["LinkError", "Frame", "Identity", "Counters", "encode_frame", "FrameReader", "input_payload",
           "output_words", "parse_identity", "parse_counters", "parse_error"]

MAX_PAYLOAD = 0xFFFF


class LinkError(SparseLSTMError):
    """The link to the board failed: no answer, a corrupted frame, or an ERROR frame from the board."""


@dataclass(frozen=True)
class Frame:
    type: int
    payload: bytes


@dataclass(frozen=True)
class Identity:
    version: int
    model_id: bytes
    input_size: int
    output_size: int
    act_bits: int
    rx_buffer: int          # bytes the board buffers
    clock_hz: int


@dataclass(frozen=True)
class Counters:
    frames_done: int
    cycles: int             # clock cycles the accelerator was busy
    busy: bool


def encode_frame(frame_type: int, payload: bytes = b"") -> bytes:
    """SYNC, type, length, payload, CRC."""
    if not 0 <= frame_type <= 0xFF:
        raise ValueError(f"frame type must be a byte, got {frame_type}")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes is longer than {MAX_PAYLOAD}")
    body = bytes([frame_type]) + len(payload).to_bytes(2, "little") + bytes(payload)
    return bytes([SYNC]) + body + crc16(body).to_bytes(CRC_BYTES, "big")


class FrameReader:
    """Reassembles frames from bytes fed in arbitrary pieces. Bytes before a SYNC are skipped; a frame
    whose CRC does not match raises LinkError."""

    def __init__(self):
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> list[Frame]:
        self._buffer += chunk
        frames = []
        while True:
            start = self._buffer.find(bytes([SYNC]))
            if start < 0:
                self._buffer.clear()
                return frames
            del self._buffer[:start]
            if len(self._buffer) < HEADER_BYTES:
                return frames
            length = int.from_bytes(self._buffer[2:4], "little")
            end = HEADER_BYTES + length + CRC_BYTES
            if len(self._buffer) < end:
                return frames
            body, received = bytes(self._buffer[1:end - CRC_BYTES]), bytes(self._buffer[end - CRC_BYTES:end])
            del self._buffer[:end]
            if crc16(body).to_bytes(CRC_BYTES, "big") != received:
                raise LinkError(f"a frame from the board (type 0x{body[0]:02x}, {length} bytes) has a bad CRC")
            frames.append(Frame(body[0], body[HEADER_BYTES - 1:]))


def input_payload(words: np.ndarray, act_bits: int) -> bytes:
    """One input frame's act words as 16-bit little-endian two's complement; ValueError outside act_bits."""
    words = np.asarray(words, dtype=np.int64)
    low, high = -(1 << (act_bits - 1)), (1 << (act_bits - 1)) - 1
    if words.size and (words.min() < low or words.max() > high):
        raise ValueError(f"input words must be in [{low}, {high}] ({act_bits}-bit act words)")
    return words.astype("<i2").tobytes()


def output_words(frame: Frame, output_size: int) -> np.ndarray:
    payload = _expect(frame, Reply.OUTPUT, WORD_BYTES * output_size)
    return np.frombuffer(payload, dtype="<i2").astype(np.int64)


def _expect(frame: Frame, kind: Reply, size: int) -> bytes:
    if frame.type != kind or len(frame.payload) != size:
        raise LinkError(f"expected {kind.name} ({size} bytes), got a frame of type 0x{frame.type:02x} with "
                        f"{len(frame.payload)} bytes")
    return frame.payload


def parse_identity(frame: Frame) -> Identity:
    p = _expect(frame, Reply.IDENTITY, IDENTITY_BYTES)
    at = 1 + MODEL_ID_BYTES
    return Identity(version=p[0], model_id=bytes(p[1:at]), input_size=int.from_bytes(p[at:at + 2], "little"),
                    output_size=int.from_bytes(p[at + 2:at + 4], "little"), act_bits=p[at + 4],
                    rx_buffer=int.from_bytes(p[at + 5:at + 7], "little"),
                    clock_hz=int.from_bytes(p[at + 7:at + 11], "little"))


def parse_counters(frame: Frame) -> Counters:
    p = _expect(frame, Reply.COUNTERS, COUNTERS_BYTES)
    return Counters(frames_done=int.from_bytes(p[0:8], "little"), cycles=int.from_bytes(p[8:16], "little"),
                    busy=bool(p[16]))


def parse_error(frame: Frame) -> tuple[LinkErrorCode | int, int]:
    """(error code, type of the offending frame) of an ERROR frame."""
    p = _expect(frame, Reply.ERROR, ERROR_BYTES)
    try:
        code = LinkErrorCode(p[0])
    except ValueError:
        code = p[0]
    return code, p[1]
