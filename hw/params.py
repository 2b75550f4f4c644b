"""Hardware parameters: the choices that are not fixed by the encoded model.

The number of PEs and every number format come from the encoded model (they are baked into its memory
images); what is left to choose when generating hardware is collected here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..spec.errors import ParameterError

__all__ = ["HardwareParams", "MAX_LANES", "MAX_STREAMS"]

MAX_LANES = 64
MAX_STREAMS = 64


@dataclass(frozen=True)
class HardwareParams:
    """Hardware generation parameters (validated on construction: TypeError for a wrong type,
    ParameterError, a ValueError, for a value out of range).

    fifo_depth:      activation FIFO words per PE (ESE found 8 best); >= 2 so a PE can take a word while
                     its pointer fetch of the previous one is in flight.
    acc_bits:        accumulator width; None = the narrowest width the model needs (numerics.md,
                     *Accumulators*). A given width narrower than the model needs is an elaboration error.
    max_entry_depth: largest entry memory a PE may have (words); models above it are rejected, so a
                     too-large model fails at generation and not in place-and-route.
    counter_bits:    width of the per-PE MAC counters and of `frames_done`.
    cycle_counter_bits: width of the busy-cycle counter.
    lanes:           element-wise lanes (1, 2, 4, ...: cells per cycle through the element-wise pass, and m
                     words per broadcast word); None = the design picks the smallest count with which the
                     element-wise pass does not bound the frame (hw/cycle_model.py, `default_lanes`). At most
                     the number of PEs, which it must divide (checked by AcceleratorDesign.from_encoded).
    streams:         interleaved independent sequences (utterances): frame k on the input belongs to stream
                     k mod streams, each stream has its own cell state and y; one stream's element-wise pass
                     overlaps the next stream's recurrent products (docs/architecture.md, *Streams*). Not
                     with delta mode (checked by AcceleratorDesign.from_encoded).
    """

    fifo_depth: int = 8
    acc_bits: int | None = None
    max_entry_depth: int = 1 << 20
    counter_bits: int = 32
    cycle_counter_bits: int = 48
    lanes: int | None = None
    streams: int = 1

    def __post_init__(self):
        def check_int(name, value, low, high):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"HardwareParams.{name} must be an integer, got {type(value).__name__}")
            if not low <= value <= high:
                raise ParameterError(f"HardwareParams.{name} must be an integer in [{low}, {high}], got {value!r}")

        check_int("fifo_depth", self.fifo_depth, 2, 1024)
        if self.acc_bits is not None:
            check_int("acc_bits", self.acc_bits, 2, 64)
        check_int("max_entry_depth", self.max_entry_depth, 1, 1 << 28)
        check_int("counter_bits", self.counter_bits, 8, 64)
        check_int("cycle_counter_bits", self.cycle_counter_bits, 8, 64)
        if self.lanes is not None:
            check_int("lanes", self.lanes, 1, MAX_LANES)
            if self.lanes & (self.lanes - 1):
                raise ParameterError(f"HardwareParams.lanes must be a power of two, got {self.lanes!r}")
        check_int("streams", self.streams, 1, MAX_STREAMS)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "HardwareParams":
        if not isinstance(d, dict):
            raise TypeError(f"HardwareParams.from_dict needs a dict, got {type(d).__name__}")
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ParameterError(f"HardwareParams: unknown parameter(s) {sorted(unknown)}")
        return cls(**d)
