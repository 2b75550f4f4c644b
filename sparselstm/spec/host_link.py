"""The host link protocol (docs/host-link.md), shared by the board's gateware (hw/boards/host_link.py) and the
host driver (sw/hostlink/).

Every frame, in either direction:

    SYNC (0x5A) | type (1 byte) | length (2 bytes, little-endian) | payload (length bytes) | CRC (2 bytes)

The CRC is CRC-16/IBM-3740 (also called CRC-16/CCITT-FALSE: polynomial 0x1021, initial value 0xFFFF, no
reflection, no final XOR) over type, length and payload, sent high byte first, so that the CRC register of
a receiver that also runs over the two CRC bytes ends at 0. Multi-byte numbers are little-endian; input and
output words are 16-bit two's complement.
"""

from __future__ import annotations

import hashlib
from enum import IntEnum
from pathlib import Path

from .errors import EncodedModelError

__all__ = ["SYNC", "PROTOCOL_VERSION", "MODEL_ID_BYTES", "WORD_BYTES", "HEADER_BYTES", "CRC_BYTES",
           "Command", "Reply", "LinkErrorCode", "IDENTITY_BYTES", "COUNTERS_BYTES", "ERROR_BYTES",
           "crc16", "model_id"]

SYNC = 0x5A
PROTOCOL_VERSION = 1
MODEL_ID_BYTES = 8          # the first bytes of sha256(manifest.json)
WORD_BYTES = 2              # one input or output word
HEADER_BYTES = 4            # sync, type, length
CRC_BYTES = 2


class Command(IntEnum):
    """Frame types from the host to the board."""

    IDENTIFY = 0x01         # -> IDENTITY
    RESET = 0x02            # reset the accelerator (state, counters) -> ACK
    COUNTERS = 0x03         # -> COUNTERS
    INPUT = 0x10            # one input frame continuing the sequence (2 * input_size bytes) -> OUTPUT
    INPUT_START = 0x11      # one input frame that starts a new sequence -> OUTPUT


class Reply(IntEnum):
    """Frame types from the board to the host."""

    IDENTITY = 0x81         # version u8, model id (8 bytes), input_size u16, output_size u16, act_bits u8,
                            # rx_buffer u16 (bytes the board buffers: the host's window of unanswered input),
                            # clock_hz u32 (the accelerator's clock)
    ACK = 0x82              # no payload
    COUNTERS = 0x83         # frames_done u64, cycles u64 (busy cycles), busy u8
    OUTPUT = 0x90           # one output frame (2 * output_size bytes), in the order of the input frames
    ERROR = 0xEE            # code u8 (LinkErrorCode), type u8 of the offending frame (0 when unknown)


class LinkErrorCode(IntEnum):
    BAD_CRC = 1             # the frame's CRC did not match; the frame was dropped
    OVERRUN = 2             # bytes were lost because the board's receive buffer was full
    UNKNOWN_TYPE = 3        # not a Command
    BAD_LENGTH = 4          # the length does not fit the command
    TIMEOUT = 5             # a frame stopped arriving in the middle


IDENTITY_BYTES = 1 + MODEL_ID_BYTES + 2 + 2 + 1 + 2 + 4
COUNTERS_BYTES = 8 + 8 + 1
ERROR_BYTES = 2


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/IBM-3740 of `data` (continuing from `crc`)."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def model_id(encoded_dir) -> bytes:
    """The identity of an encoded model: the first MODEL_ID_BYTES bytes of sha256(manifest.json)."""
    manifest = Path(encoded_dir) / "manifest.json"
    try:
        return hashlib.sha256(manifest.read_bytes()).digest()[:MODEL_ID_BYTES]
    except OSError as error:
        raise EncodedModelError(f"{manifest}: cannot read the manifest ({error.strerror or error})") from None
