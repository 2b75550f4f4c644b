"""cocotb tests of the generated accelerator (`sparselstm_top`), run by sim/runner.py inside the simulator.

The case (sidecar, input words, sequence starts, golden expected words, stalls, seed) is read from the
directory named by $SPARSELSTM_SIM_CASE; see sim/testbench.py for the driver, monitor and checker.
"""

import cocotb

from .testbench import case_dir_from_environment, run_case, run_idle_check


@cocotb.test()
async def idle_after_reset(dut):
    """Without input the accelerator sends nothing, is not busy and every counter reads zero."""
    await run_idle_check(dut, case_dir_from_environment())


@cocotb.test()
async def stream_frames(dut):
    """Every input frame through the accelerator; every output word equals the golden model's."""
    await run_case(dut, case_dir_from_environment())
