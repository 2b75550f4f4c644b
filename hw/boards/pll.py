"""The ECP5 PLL (EHXPLLL): dividers for a requested frequency, and the primitive as a component."""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Instance, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ...spec.errors import ParameterError

__all__ = ["PLLConfig", "ecp5_pll_config", "ECP5PLL"]

# ECP5 family data sheet (FPGA-DS-02012), sysCLOCK PLL timing.
VCO_MIN_HZ, VCO_MAX_HZ = 400e6, 800e6
PFD_MIN_HZ, PFD_MAX_HZ = 3.125e6, 400e6
OUTPUT_MIN_HZ, OUTPUT_MAX_HZ = 3.125e6, 400e6
DIVIDER_MAX = 128


@dataclass(frozen=True)
class PLLConfig:
    """EHXPLLL dividers with CLKOP as feedback: f_out = f_in * clkfb_div / clki_div, f_vco = f_out * clkop_div."""

    input_hz: float
    clki_div: int
    clkfb_div: int
    clkop_div: int

    @property
    def output_hz(self) -> float:
        return self.input_hz * self.clkfb_div / self.clki_div

    @property
    def vco_hz(self) -> float:
        return self.output_hz * self.clkop_div


def ecp5_pll_config(target_hz: float, input_hz: float = 25e6) -> PLLConfig:
    """The dividers whose output is closest to `target_hz` (ties: the lowest input divider, then the
    highest VCO frequency, for less jitter). Raises ParameterError outside the PLL's output range."""
    if not isinstance(target_hz, (int, float)) or isinstance(target_hz, bool):
        raise TypeError(f"target frequency must be a number, got {type(target_hz).__name__}")
    if not OUTPUT_MIN_HZ <= target_hz <= OUTPUT_MAX_HZ:
        raise ParameterError(f"the ECP5 PLL cannot make {target_hz / 1e6:g} MHz: its output range is "
                             f"{OUTPUT_MIN_HZ / 1e6:g}-{OUTPUT_MAX_HZ / 1e6:g} MHz")
    best, best_key = None, None
    for clki_div in range(1, DIVIDER_MAX + 1):
        pfd = input_hz / clki_div
        if not PFD_MIN_HZ <= pfd <= PFD_MAX_HZ:
            continue
        for clkfb_div in range(1, DIVIDER_MAX + 1):
            output = pfd * clkfb_div
            if output > OUTPUT_MAX_HZ:
                break
            clkop_div = int(VCO_MAX_HZ // output)         # the highest VCO within range
            if clkop_div < 1 or output * min(clkop_div, DIVIDER_MAX) < VCO_MIN_HZ:
                continue
            clkop_div = min(clkop_div, DIVIDER_MAX)
            key = (abs(output - target_hz), clki_div, -output * clkop_div)
            if best_key is None or key < best_key:
                best, best_key = PLLConfig(input_hz, clki_div, clkfb_div, clkop_div), key
    if best is None:
        raise ParameterError(f"no ECP5 PLL setting makes {target_hz / 1e6:g} MHz from {input_hz / 1e6:g} MHz")
    return best


class ECP5PLL(wiring.Component):
    """One EHXPLLL output (CLKOP, also the feedback).

    Ports:
      clk_in   In(1): the reference clock (the board oscillator)
      clk_out  Out(1): the output clock
      locked   Out(1): the PLL is locked (asynchronous to every clock)
    """

    def __init__(self, config: PLLConfig):
        if not isinstance(config, PLLConfig):
            raise TypeError(f"ECP5PLL needs a PLLConfig, got {type(config).__name__}")
        self.config = config
        super().__init__({"clk_in": In(1), "clk_out": Out(1), "locked": Out(1)})

    def elaborate(self, platform):
        config = self.config
        m = Module()
        output = self.clk_out
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{config.input_hz / 1e6:g}",
            a_FREQUENCY_PIN_CLKOP=f"{config.output_hz / 1e6:.6f}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_FEEDBK_PATH="CLKOP",
            p_CLKI_DIV=config.clki_div, p_CLKFB_DIV=config.clkfb_div,
            p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=config.clkop_div,
            p_CLKOP_CPHASE=config.clkop_div - 1, p_CLKOP_FPHASE=0,      # 0 degrees
            i_RST=0, i_STDBY=0, i_CLKI=self.clk_in, i_CLKFB=output, o_CLKOP=output,
            i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1,
            i_PLLWAKESYNC=0, i_ENCLKOP=0, o_LOCK=self.locked,
        )
        return m
