"""A small stand-in for the accelerator, to prove the cocotb infrastructure on its own.

`StandInAccelerator` has the accelerator's top-level interface (docs/verification.md): an input stream of
{value, first} words, an output stream of {value, last} words, `busy`, `frames_done`, `cycles` and per-"PE"
counters, and `generate_standin()` writes its Verilog and a sidecar of the same schema. So every part of
the testbench that reads a sidecar, drives the streams, assembles frames and reads counters runs exactly as
on the real accelerator, in a second instead of minutes.

What it computes, per frame of `input_size` words x[0..I-1] (state cleared where `first` is set):

    acc[c] = sat(acc[c] + x[c])        (acc = 0 at a sequence start), output word c = acc[c]
    output word I = number of frames since the sequence start (1, 2, ...), saturating

so the output frame has `input_size + 1` words, and the result depends on the sequence-start markers.
`standin_reference()` is the same in numpy; it is the expected-word model for the stand-in only.

`defect` plants one bug, to show that the testbench catches it:
    "none"          correct
    "short_frame"   raises `last` one word early in every frame and drops the frame counter word
    "hang"          stops sending output after `hang_after` frames (the watchdog must fire)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from amaranth.back import verilog as amaranth_verilog

from amaranth.hdl import Array, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..hw.interfaces import input_word_layout, output_word_layout
from ..hw.sidecar import describe_top
from ..hw.verilog import portable_verilog

__all__ = ["StandInAccelerator", "generate_standin", "standin_reference", "STANDIN_TOP", "DEFECTS"]

STANDIN_TOP = "standin_top"
DEFECTS = ("none", "short_frame", "hang")
_COUNTER_BITS = 32
_CYCLE_BITS = 48


class StandInAccelerator(wiring.Component):
    """Accepts a whole input frame, then sends the whole output frame (no overlap: simple on purpose).

    Parameters
    ----------
    input_size : int
        Words per input frame (>= 1); an output frame has `input_size + 1`.
    act_bits : int
        Width of the `value` fields (>= 2).
    n_pes : int
        Number of per-"PE" counters (>= 1); accepted input word k counts on PE k mod n_pes.
    defect : str
        One of DEFECTS (see the module docstring).
    hang_after : int
        With defect "hang": the frames sent before the output stops.

    Attributes
    ----------
    i : In(stream.Signature(input word {value, first}))
    o : Out(stream.Signature(output word {value, last}))
    busy : Out(1)
        A frame has started and its output is not yet sent.
    frames_done : Out(32)
        Output frames sent.
    cycles : Out(48)
        Cycles with `busy`.
    mac_cycles, pad_cycles : Out(Signature({"pe<N>": Out(32)}))
        Accepted input words per "PE"; pad_cycles stay 0.
    """

    def __init__(self, input_size: int, act_bits: int = 16, n_pes: int = 2, defect: str = "none",
                 hang_after: int = 2):
        if input_size < 1 or n_pes < 1 or act_bits < 2:
            raise ValueError("input_size, n_pes >= 1 and act_bits >= 2 required")
        if defect not in DEFECTS:
            raise ValueError(f"defect must be one of {DEFECTS}, got {defect!r}")
        self.input_size, self.act_bits, self.n_pes = input_size, act_bits, n_pes
        self.defect, self.hang_after = defect, hang_after
        per_pe = wiring.Signature({f"pe{p}": Out(_COUNTER_BITS) for p in range(n_pes)})
        super().__init__({
            "i": In(stream.Signature(input_word_layout(act_bits))),
            "o": Out(stream.Signature(output_word_layout(act_bits))),
            "busy": Out(1),
            "frames_done": Out(_COUNTER_BITS),
            "cycles": Out(_CYCLE_BITS),
            "mac_cycles": Out(per_pe),
            "pad_cycles": Out(per_pe),
        })

    @property
    def output_size(self) -> int:
        return self.input_size + 1

    def elaborate(self, platform):
        m = Module()
        size, bits = self.input_size, self.act_bits
        low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1

        acc = Array(Signal(signed(bits), name=f"acc{c}") for c in range(size))
        frame_count = Signal(unsigned(bits - 1))      # frames since the sequence start, shown as a word
        index = Signal(range(size + 1))
        clearing = Signal()                           # the frame being received starts a sequence
        sending = Signal()
        in_frame = Signal()                           # a frame has started and its output is not yet sent

        # Receive: one word per cycle while not sending.
        m.d.comb += self.i.ready.eq(~sending)
        with m.If(self.i.valid & self.i.ready):
            starts = Mux(index == 0, self.i.payload.first, clearing)
            previous = Mux(starts, 0, acc[index])
            total = Signal(signed(bits + 1))
            m.d.comb += total.eq(previous + self.i.payload.value)
            m.d.sync += acc[index].eq(Mux(total > high, high, Mux(total < low, low, total)))
            m.d.sync += [clearing.eq(starts), in_frame.eq(1)]
            with m.If(index == size - 1):
                m.d.sync += [index.eq(0), sending.eq(1)]
                with m.If(starts):
                    m.d.sync += frame_count.eq(1)
                with m.Elif(frame_count != (1 << (bits - 1)) - 1):
                    m.d.sync += frame_count.eq(frame_count + 1)
            with m.Else():
                m.d.sync += index.eq(index + 1)
            for p in range(self.n_pes):
                with m.If(index % self.n_pes == p):
                    counter = getattr(self.mac_cycles, f"pe{p}")
                    m.d.sync += counter.eq(counter + 1)

        # Send: the accumulators, then the frame counter word.
        words = self.output_size if self.defect != "short_frame" else self.output_size - 1
        hung = Const(0)
        if self.defect == "hang":
            hung = self.frames_done >= self.hang_after
        m.d.comb += [
            self.o.valid.eq(sending & ~hung),
            self.o.payload.value.eq(Mux(index == size, frame_count, acc[index])),
            self.o.payload.last.eq(index == words - 1),
        ]
        with m.If(self.o.valid & self.o.ready):
            with m.If(index == words - 1):
                m.d.sync += [index.eq(0), sending.eq(0), in_frame.eq(0),
                             self.frames_done.eq(self.frames_done + 1)]
            with m.Else():
                m.d.sync += index.eq(index + 1)

        m.d.comb += self.busy.eq(in_frame | (index != 0))
        with m.If(self.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        return m


def standin_reference(x_q: np.ndarray, sequence_starts: np.ndarray, act_bits: int = 16) -> np.ndarray:
    """The stand-in's output words for input words x_q (frames, I) with the given sequence-start markers."""
    x_q = np.asarray(x_q, dtype=np.int64)
    low, high = -(1 << (act_bits - 1)), (1 << (act_bits - 1)) - 1
    out = np.zeros((x_q.shape[0], x_q.shape[1] + 1), dtype=np.int64)
    acc = np.zeros(x_q.shape[1], dtype=np.int64)
    count = 0
    for t, frame in enumerate(x_q):
        if t == 0 or sequence_starts[t]:
            acc[:], count = 0, 0
        acc = np.clip(acc + frame, low, high)
        count = min(count + 1, high)
        out[t, :-1], out[t, -1] = acc, count
    return out


def generate_standin(outdir, input_size: int = 5, act_bits: int = 16, n_pes: int = 2, defect: str = "none",
                     hang_after: int = 2) -> dict:
    """Write OUTDIR/standin_top.v and OUTDIR/standin_top.json (the accelerator's sidecar schema)."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    top = StandInAccelerator(input_size, act_bits, n_pes, defect, hang_after)
    verilog = portable_verilog(amaranth_verilog.convert(top, name=STANDIN_TOP, emit_src=False))
    (outdir / f"{STANDIN_TOP}.v").write_text(verilog)
    dimensions = {"input_size": input_size, "output_size": top.output_size, "n_layers": 1, "n_pes": n_pes,
                  "act_bits": act_bits, "act_frac": 0}
    # Receive I words, then send I + 1: the per-frame cycle count without stalls.
    details = {"cycle_model": {"cycles_per_frame": 2 * input_size + 1, "first_frame_cycles": 2 * input_size + 1}}
    sidecar = describe_top(top, STANDIN_TOP, "sparselstm.sim.standin", dimensions, details)
    (outdir / f"{STANDIN_TOP}.json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return sidecar
