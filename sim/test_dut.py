"""cocotb tests of a DUT described by a sidecar (the accelerator or the stand-in of sim/standin.py), run by
sim/runner.py inside the simulator.

The case (sidecar, input words, sequence starts, expected words, stalls, seed) is read from the directory
named by $SPARSELSTM_SIM_CASE; sim/bench.py holds the driver, monitor and checker that run it.
"""

import cocotb

from .bench import run_case, run_idle_check
from .case import case_dir_from_environment


@cocotb.test()
async def idle_after_reset(dut):
    """Without input the DUT sends nothing, is not busy and every counter reads zero."""
    await run_idle_check(dut, case_dir_from_environment())


@cocotb.test()
async def stream_frames(dut):
    """Every input frame through the DUT; every output word equals the expected one (the model's)."""
    await run_case(dut, case_dir_from_environment())
