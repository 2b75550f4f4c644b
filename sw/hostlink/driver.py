"""The host side of the link (docs/host-link.md) on pyserial: identify, reset, read counters, run frames."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ...spec.host_link import CRC_BYTES, HEADER_BYTES, WORD_BYTES, Command, Reply
from .frames import (Counters, Frame, FrameReader, Identity, LinkError, encode_frame, input_payload,
                     output_words, parse_counters, parse_error, parse_identity)

__all__ = ["BoardLink", "RunStatistics", "DEFAULT_BAUD"]

DEFAULT_BAUD = 3_000_000        # the ULX3S's FT231X maximum
DEFAULT_TIMEOUT = 5.0           # seconds without an expected frame before giving up
DEFAULT_SETTLE = 0.2            # seconds of silence after an error, longer than the board's quiet time


@dataclass(frozen=True)
class RunStatistics:
    frames: int
    wall_seconds: float
    cycles: int                 # accelerator busy cycles over the run
    clock_hz: int

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.wall_seconds if self.wall_seconds > 0 else float("inf")

    @property
    def cycles_per_frame(self) -> float:
        return self.cycles / self.frames if self.frames else 0.0

    @property
    def link_share(self) -> float:
        """The part of the wall time the accelerator was not busy: the link and the host."""
        on_chip = self.cycles / self.clock_hz
        return max(0.0, 1.0 - on_chip / self.wall_seconds) if self.wall_seconds > 0 else 0.0


class BoardLink:
    """A board behind a byte stream: any object with pyserial's read(n) / write(b) / close(), usually from
    `BoardLink.open(url)` (a pyserial URL: /dev/ttyUSB0, socket://HOST:PORT, ...)."""

    def __init__(self, port, *, timeout: float = DEFAULT_TIMEOUT, settle: float = DEFAULT_SETTLE):
        self.port = port
        self.timeout = timeout
        self.settle = settle
        self._reader = FrameReader()
        self._pending: list[Frame] = []

    @classmethod
    def open(cls, url: str, baud: int = DEFAULT_BAUD, **options) -> "BoardLink":
        import serial

        try:
            port = serial.serial_for_url(url, baudrate=baud, timeout=0.05)
        except (serial.SerialException, ValueError) as error:
            raise LinkError(f"cannot open {url}: {error}") from None
        return cls(port, **options)

    def close(self) -> None:
        self.port.close()

    def __enter__(self) -> "BoardLink":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ---- frames ------------------------------------------------------------------------------------------
    def send(self, frame_type: int, payload: bytes = b"") -> None:
        self.send_raw(encode_frame(frame_type, payload))

    def send_raw(self, data: bytes) -> None:
        """Bytes as they are (tests use this to send corrupted frames)."""
        try:
            self.port.write(data)
        except OSError as error:            # pyserial's SerialException is an OSError
            raise LinkError(f"cannot send to the board: {error}") from None

    def _read(self, size: int) -> bytes:
        try:
            return self.port.read(size)
        except OSError as error:
            raise LinkError(f"cannot read from the board: {error}") from None

    def receive(self, timeout: float | None = None) -> Frame:
        """The next frame from the board; LinkError after `timeout` seconds without one."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while not self._pending:
            if time.monotonic() > deadline:
                raise LinkError(f"no answer from the board within {timeout:g} s")
            chunk = self._read(max(1, getattr(self.port, "in_waiting", 0)))
            if chunk:
                self._pending.extend(self._reader.feed(chunk))
        return self._pending.pop(0)

    def _expect(self, kind: Reply) -> Frame:
        frame = self.receive()
        if frame.type == Reply.ERROR:
            code, offending = parse_error(frame)
            name = getattr(code, "name", str(code))
            raise LinkError(f"the board reported {name} (frame type 0x{offending:02x})")
        if frame.type != kind:
            raise LinkError(f"expected {kind.name} from the board, got a frame of type 0x{frame.type:02x}")
        return frame

    def recover(self) -> None:
        """After an error: stay silent until the board resynchronises, then drop whatever arrived."""
        time.sleep(self.settle)
        while self._read(4096):
            pass
        self._reader = FrameReader()
        self._pending.clear()

    # ---- commands ----------------------------------------------------------------------------------------
    def identify(self) -> Identity:
        self.send(Command.IDENTIFY)
        return parse_identity(self._expect(Reply.IDENTITY))

    def reset(self) -> None:
        self.send(Command.RESET)
        self._expect(Reply.ACK)

    def counters(self) -> Counters:
        self.send(Command.COUNTERS)
        return parse_counters(self._expect(Reply.COUNTERS))

    def run(self, x_q: np.ndarray, sequence_starts=None, identity: Identity | None = None,
            progress=None) -> tuple[np.ndarray, RunStatistics]:
        """Act words x_q (T, input_size) through the board; frame 0 and frames where `sequence_starts` is True
        start a sequence. Returns the output words (T, output_size) and the run's statistics. `progress`
        is called with the number of frames received so far."""
        identity = identity or self.identify()
        x_q = np.asarray(x_q)
        if x_q.ndim != 2 or x_q.shape[1] != identity.input_size:
            raise ValueError(f"expected input of shape (T, {identity.input_size}), got {x_q.shape}")
        frames = x_q.shape[0]
        starts = np.zeros(frames, dtype=bool) if sequence_starts is None else np.asarray(sequence_starts, bool)
        if starts.shape != (frames,):
            raise ValueError(f"sequence starts must have shape ({frames},), got {starts.shape}")
        frame_bytes = HEADER_BYTES + WORD_BYTES * identity.input_size + CRC_BYTES
        window = max(1, identity.rx_buffer // frame_bytes)
        payloads = [input_payload(row, identity.act_bits) for row in x_q]

        before = self.counters()
        begin = time.monotonic()
        outputs = np.zeros((frames, identity.output_size), dtype=np.int64)
        sent = received = 0
        while received < frames:
            while sent < frames and sent - received < window:
                command = Command.INPUT_START if sent == 0 or starts[sent] else Command.INPUT
                self.send(command, payloads[sent])
                sent += 1
            outputs[received] = output_words(self._expect(Reply.OUTPUT), identity.output_size)
            received += 1
            if progress is not None:
                progress(received)
        wall = time.monotonic() - begin
        after = self.counters()
        return outputs, RunStatistics(frames=frames, wall_seconds=wall, cycles=after.cycles - before.cycles,
                                      clock_hz=identity.clock_hz)
