"""The DUT as its sidecar JSON describes it (schema in docs/verification.md). Plain Python, no cocotb.

Every port name, payload field and width the testbench uses comes from here, so the testbench runs
unchanged on any DUT with a sidecar: the accelerator and the stand-in of sim/standin.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..spec.errors import SparseLSTMError

__all__ = ["SidecarError", "PayloadField", "Port", "StreamSpec", "DutSpec", "SIDECAR_VERSION"]

SIDECAR_VERSION = 1                      # the version this reader understands


class SidecarError(SparseLSTMError):
    """A sidecar JSON is missing a key or has a value of the wrong type (the message names both)."""


@dataclass(frozen=True)
class PayloadField:
    """One field of a stream's payload word: `word[offset +: width]`, two's complement when `signed`.

    Parameters
    ----------
    offset : int
        The field's lowest bit in the payload, >= 0.
    width : int
        Its number of bits, >= 1.
    signed : bool
        Whether `decode` sign-extends it.
    """

    offset: int
    width: int
    signed: bool

    def __post_init__(self):
        if self.offset < 0 or self.width < 1:
            raise ValueError(f"payload field needs offset >= 0 and width >= 1, got {self.offset}, {self.width}")

    def decode(self, word: int) -> int:
        """The field's value in the payload `word`."""
        value = (word >> self.offset) & ((1 << self.width) - 1)
        if self.signed and value >> (self.width - 1):
            value -= 1 << self.width
        return value

    def encode(self, value: int) -> int:
        """`value` placed in the field (truncated to its width), the other bits zero."""
        return (int(value) & ((1 << self.width) - 1)) << self.offset


@dataclass(frozen=True)
class Port:
    """One port of the top module.

    Parameters
    ----------
    name : str
    direction : str
        "input" or "output".
    width : int
        Bits, >= 1.
    """

    name: str
    direction: str
    width: int

    def __post_init__(self):
        if self.direction not in ("input", "output") or self.width < 1:
            raise ValueError(f"port {self.name}: direction must be input or output and width >= 1, "
                             f"got {self.direction!r}, {self.width}")


@dataclass(frozen=True)
class StreamSpec:
    """The ports of one valid/ready stream and its payload field map.

    Parameters
    ----------
    valid, ready, payload : str
        Port names.
    width : int
        Payload width in bits.
    fields : dict of str to PayloadField
        The payload's fields by name.
    """

    valid: str
    ready: str
    payload: str
    width: int
    fields: dict[str, PayloadField]


@dataclass(frozen=True)
class DutSpec:
    """What the testbench needs to know about a DUT, all from its sidecar.

    Build it with `DutSpec.load(path)` or `DutSpec.from_sidecar(dict)`; both raise `SidecarError` naming
    the missing or mistyped key. The input stream must have `value` and `first` fields, the output stream
    `value` and `last`.

    Attributes
    ----------
    top, verilog, clock, reset : str
        Top module, Verilog file (relative to the sidecar), clock and reset port names.
    reset_active_high : bool
    input, output : StreamSpec
    input_size, output_size : int
        Words per input and per output frame.
    status : dict of str to str
        "busy", "frames_done", "cycles" -> port name.
    status_widths : dict of str to int
    counters : dict of str to list of str
        A counter group (e.g. "mac_cycles") -> one port name per PE.
    ports : tuple of Port
        Every port of the top module.
    n_pes : int
    cycles_per_frame, first_frame_cycles : int or None
        The sidecar's cycle model (steady state, lone frame), if it has one.
    total_entries : int or None
        The work per frame, if the sidecar states it.
    """

    top: str
    verilog: str
    clock: str
    reset: str
    reset_active_high: bool
    input: StreamSpec
    output: StreamSpec
    input_size: int
    output_size: int
    status: dict[str, str]
    status_widths: dict[str, int]
    counters: dict[str, list[str]]
    ports: tuple[Port, ...]
    n_pes: int
    cycles_per_frame: int | None
    first_frame_cycles: int | None
    total_entries: int | None

    @classmethod
    def from_sidecar(cls, sidecar: dict, source: str = "sidecar") -> "DutSpec":
        def get(mapping, key, kind, where):
            if not isinstance(mapping, dict) or key not in mapping:
                raise SidecarError(f"{source}: missing key {where}{key!r}")
            value = mapping[key]
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise SidecarError(f"{source}: {where}{key!r} should be {kind.__name__}, got {value!r}")
            return value

        def stream_spec(name, required_fields):
            info = get(get(sidecar, "streams", dict, ""), name, dict, "streams.")
            where = f"streams.{name}."
            fields = {}
            for field_name, field_info in get(info, "fields", dict, where).items():
                field_where = f"{where}fields.{field_name}."
                try:
                    fields[field_name] = PayloadField(get(field_info, "offset", int, field_where),
                                                      get(field_info, "width", int, field_where),
                                                      get(field_info, "signed", bool, field_where))
                except ValueError as error:
                    raise SidecarError(f"{source}: {where}fields.{field_name}: {error}") from None
            missing = set(required_fields) - set(fields)
            if missing:
                raise SidecarError(f"{source}: {where}fields lacks {sorted(missing)}")
            return StreamSpec(get(info, "valid", str, where), get(info, "ready", str, where),
                              get(info, "payload", str, where), get(info, "width", int, where), fields)

        version = get(sidecar, "sidecar_version", int, "")
        if version != SIDECAR_VERSION:
            raise SidecarError(f"{source}: sidecar_version {version} is not supported "
                               f"(expected {SIDECAR_VERSION})")
        family = sidecar.get("family")
        if family is not None:
            raise SidecarError(f"{source}: the Verilog was generated for the device family {family!r} (vendor "
                               f"primitives such as MULT18X18D, which simulators do not have); generate it "
                               f"without --family to simulate it")
        status = get(sidecar, "status", dict, "")
        for key in ("busy", "frames_done", "cycles"):
            get(status, key, str, "status.")
        counters = {name: list(ports) for name, ports in get(sidecar, "counters", dict, "").items()
                    if isinstance(ports, list)}
        ports = []
        for k, info in enumerate(get(sidecar, "ports", list, "")):
            where = f"ports[{k}]."
            try:
                ports.append(Port(get(info, "name", str, where), get(info, "direction", str, where),
                                  get(info, "width", int, where)))
            except ValueError as error:
                raise SidecarError(f"{source}: {where[:-1]}: {error}") from None
        model = sidecar.get("cycle_model") or {}
        work = sidecar.get("work") or {}
        return cls(
            top=get(sidecar, "top", str, ""), verilog=get(sidecar, "verilog", str, ""),
            clock=get(sidecar, "clock", str, ""), reset=get(sidecar, "reset", str, ""),
            reset_active_high=bool(sidecar.get("reset_active_high", True)),
            input=stream_spec("input", ("value", "first")), output=stream_spec("output", ("value", "last")),
            input_size=get(sidecar, "input_size", int, ""), output_size=get(sidecar, "output_size", int, ""),
            status=dict(status), status_widths=dict(sidecar.get("status_widths") or {}),
            counters=counters, ports=tuple(ports), n_pes=get(sidecar, "n_pes", int, ""),
            cycles_per_frame=model.get("cycles_per_frame"), first_frame_cycles=model.get("first_frame_cycles"),
            total_entries=work.get("total_entries"),
        )

    @classmethod
    def load(cls, path) -> "DutSpec":
        path = Path(path)
        try:
            sidecar = json.loads(path.read_text())
        except FileNotFoundError:
            raise SidecarError(f"{path}: sidecar not found") from None
        except json.JSONDecodeError as error:
            raise SidecarError(f"{path}: not valid JSON ({error})") from None
        return cls.from_sidecar(sidecar, str(path))

    def frame_cycle_budget(self) -> int:
        """A generous bound on the cycles one frame may take without stalls, for the watchdog."""
        known = [v for v in (self.cycles_per_frame, self.first_frame_cycles, self.total_entries) if v]
        return max(known + [self.input_size + self.output_size])
