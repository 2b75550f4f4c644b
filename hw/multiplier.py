"""A multiplier with its pipeline registers, in a form an FPGA's DSP block can hold them.

`PipelinedMultiplier(a_shape, b_shape, latency)`: `p` = `a * b` of `latency` cycles earlier (1: the
product registered; 2: the operands and the product registered). Elaborated for simulation or plain
Verilog it is those flip-flops around Amaranth's `*`, the value for every operand. Elaborated for an ECP5
(a platform whose `family` is "ecp5": amaranth's LatticePlatform for an LFE5 part, or
`ImageGeneration(family="ecp5")` of `sparselstm verilog --family ecp5`) it is one MULT18X18D with the same
registers inside it: Yosys maps `*` to a MULT18X18D without registers and leaves them in the fabric, so
every product pays the routing from a slice to the DSP and back inside one clock period, and nextpnr
times the multiplier with its slowest (unregistered) figures.
"""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Const, Instance, Module, Shape, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["PipelinedMultiplier", "ECP5_OPERAND_BITS", "targets_ecp5"]

ECP5_OPERAND_BITS = 18          # a MULT18X18D port, signed: an unsigned operand may have 17 bits


def targets_ecp5(platform) -> bool:
    """Whether elaboration for `platform` is for an ECP5: components with an ECP5 form (DSP blocks here, block
    RAM output registers in hw/table_rom.py) instantiate its primitives."""
    return getattr(platform, "family", None) == "ecp5"


def _fits_ecp5_port(shape: Shape) -> bool:
    return shape.width <= (ECP5_OPERAND_BITS if shape.signed else ECP5_OPERAND_BITS - 1)


class PipelinedMultiplier(wiring.Component):
    """p = a * b, `latency` cycles later.

    Parameters
    ----------
    a_shape, b_shape : shape-castable
        The operands' shapes; `p` has Amaranth's product shape (widths added, signed if either is).
    latency : 1 or 2
        1: the product is registered; 2: the operands are registered too.

    Ports: `a`, `b` (In), `p` (Out), all registered as stated and without reset (data only); `en` (In, 1 when
    not driven): every register loads only while it is high (the DSP block's clock enable).
    """

    def __init__(self, a_shape, b_shape, latency: int):
        a_shape, b_shape = Shape.cast(a_shape), Shape.cast(b_shape)
        if latency not in (1, 2) or isinstance(latency, bool):
            raise ValueError(f"PipelinedMultiplier: latency must be 1 or 2, got {latency!r}")
        if a_shape.width == 0 or b_shape.width == 0:
            raise ValueError(f"PipelinedMultiplier: operands need at least one bit, got {a_shape!r} and {b_shape!r}")
        self.latency = latency
        product_shape = (Signal(a_shape) * Signal(b_shape)).shape()
        super().__init__({"a": In(a_shape), "b": In(b_shape), "p": Out(product_shape), "en": In(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        a_shape, b_shape = self.a.shape(), self.b.shape()
        if targets_ecp5(platform) and _fits_ecp5_port(a_shape) and _fits_ecp5_port(b_shape):
            self._elaborate_ecp5(m)
            return m
        a, b = self.a, self.b
        product = Signal(self.p.shape(), reset_less=True)
        with m.If(self.en):
            if self.latency == 2:
                a, b = Signal(a_shape, reset_less=True), Signal(b_shape, reset_less=True)
                m.d.sync += [a.eq(self.a), b.eq(self.b)]
            m.d.sync += product.eq(a * b)
        m.d.comb += self.p.eq(product)
        return m

    def _elaborate_ecp5(self, m: Module):
        # Each operand sign- or zero-extended to a signed 18-bit port (an unsigned operand's top bit is then
        # 0), so one signed x signed product is every case; the registers are the block's own (clock CLK0).
        a18, b18 = Signal(signed(ECP5_OPERAND_BITS)), Signal(signed(ECP5_OPERAND_BITS))
        p36 = Signal(signed(2 * ECP5_OPERAND_BITS))
        m.d.comb += [a18.eq(self.a), b18.eq(self.b), self.p.eq(p36[:len(self.p)])]
        input_clock = "CLK0" if self.latency == 2 else "NONE"
        ports = {f"i_A{k}": a18[k] for k in range(ECP5_OPERAND_BITS)}
        ports.update({f"i_B{k}": b18[k] for k in range(ECP5_OPERAND_BITS)})
        ports.update({f"i_C{k}": Const(0) for k in range(ECP5_OPERAND_BITS)})
        ports.update({f"o_P{k}": p36[k] for k in range(2 * ECP5_OPERAND_BITS)})
        m.submodules.dsp = Instance(
            "MULT18X18D",
            p_REG_INPUTA_CLK=input_clock, p_REG_INPUTB_CLK=input_clock, p_REG_OUTPUT_CLK="CLK0",
            p_REG_PIPELINE_CLK="NONE", p_REG_INPUTC_CLK="NONE",
            p_SOURCEB_MODE="B_SHIFT", p_RESETMODE="SYNC", p_GSR="DISABLED",
            i_CLK0=ClockSignal("sync"), i_CE0=self.en, i_RST0=Const(0),
            i_SIGNEDA=Const(1), i_SIGNEDB=Const(1), i_SOURCEA=Const(0), i_SOURCEB=Const(0),
            **ports)
