"""The sidecar JSON of a generated top module, its interface read from the component's `wiring.Signature`.

The accelerator (hw/verilog.py) and the stand-in DUT of the testbench (sim/standin.py) both describe
themselves with `describe_top`, so their sidecars cannot drift apart; docs/verification.md gives the schema.
The signature fixes the interface part (the rules are in `describe_top`); the model's sizes and any
further keys come from the caller.
"""

from __future__ import annotations

from amaranth.hdl import Shape, Value
from amaranth.lib import stream, wiring

__all__ = ["SIDECAR_VERSION", "CLOCK", "RESET", "describe_top"]

SIDECAR_VERSION = 1
# The names Amaranth's Verilog backend gives the clock and reset of the `sync` domain.
CLOCK = "clk"
RESET = "rst"
_STREAM_ROLES = {wiring.In: "input", wiring.Out: "output"}


def _port_name(path) -> str:
    """The Verilog name of a flattened signature member: its path joined by `__`, as Amaranth names it."""
    return "__".join(str(part) for part in path)


def _ports(top: wiring.Component) -> list[dict]:
    ports = [{"name": CLOCK, "direction": "input", "width": 1}, {"name": RESET, "direction": "input", "width": 1}]
    for path, member, value in top.signature.flatten(top):
        ports.append({"name": _port_name(path), "direction": "input" if member.flow == wiring.In else "output",
                      "width": len(Value.cast(value))})
    return ports


def _stream(name: str, signature: stream.Signature) -> dict:
    layout = signature.members["payload"].shape
    fields = {field_name: {"offset": field.offset, "width": field.width, "signed": Shape.cast(field.shape).signed}
              for field_name, field in layout}
    return {"valid": f"{name}__valid", "ready": f"{name}__ready", "payload": f"{name}__payload",
            "width": layout.size, "fields": fields}


def _interface(top: wiring.Component) -> tuple[dict, dict, dict, dict]:
    """(streams, status, status_widths, counters) of `top`, by the rules of `describe_top`."""
    streams, status, status_widths, counters = {}, {}, {}, {}
    counter_widths = set()
    for name, member in top.signature.members.items():
        if member.is_port:
            if member.flow == wiring.Out:
                status[name] = name
                status_widths[name] = Shape.cast(member.shape).width
        elif isinstance(member.signature, stream.Signature):
            role = _STREAM_ROLES[member.flow]
            if role in streams:
                raise ValueError(f"{type(top).__name__} has more than one {role} stream; the sidecar "
                                 "describes one of each")
            streams[role] = _stream(name, member.signature)
        else:
            group = list(member.signature.flatten(getattr(top, name)))
            counters[name] = [_port_name((name, *path)) for path, _, _ in group]
            counter_widths |= {len(Value.cast(value)) for _, _, value in group}
    if set(streams) != set(_STREAM_ROLES.values()):
        raise ValueError(f"{type(top).__name__} needs one input and one output stream, has {sorted(streams)}")
    if len(counter_widths) > 1:
        raise ValueError(f"{type(top).__name__}: counter ports of different widths {sorted(counter_widths)}")
    if counter_widths:
        counters["width"] = counter_widths.pop()
    return streams, status, status_widths, counters


def describe_top(top: wiring.Component, top_name: str, generator: str, dimensions: dict,
                 details: dict | None = None) -> dict:
    """The sidecar dictionary of `top`, converted to Verilog as module `top_name` in `<top_name>.v`.

    From `top.signature`, member by member:

    - a `stream.Signature` member is the input stream (flow In) or the output stream (flow Out): its
      valid/ready/payload port names, and the field map (offset, width, signedness) of its
      `data.StructLayout` payload;
    - a plain Out port is a status output, named after itself, with its width;
    - any other interface member is a group of counters (one port per PE), all of one width;
    - every port of the Verilog module (clock and reset first) with its direction and width.

    `dimensions` (input_size, output_size, n_layers, n_pes, number format, ...) follow the streams;
    `details` (model provenance, parameters, predictions) follow the counters.
    """
    if not isinstance(top, wiring.Component):
        raise TypeError(f"top must be an Amaranth wiring.Component, got {top!r}")
    streams, status, status_widths, counters = _interface(top)
    return {
        "sidecar_version": SIDECAR_VERSION,
        "generator": generator,
        "top": top_name,
        "verilog": f"{top_name}.v",
        "clock": CLOCK,
        "reset": RESET,
        "reset_active_high": True,
        "reset_synchronous": True,
        "ports": _ports(top),
        "streams": streams,
        **dimensions,
        "status": status,
        "status_widths": status_widths,
        "counters": counters,
        **(details or {}),
    }
