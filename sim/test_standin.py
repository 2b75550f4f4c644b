"""cocotb tests of the stand-in DUT (sim/standin.py), run by sim/runner.py inside the simulator.

The same driver, monitor and checker as sim/test_accelerator.py, on a DUT small enough to build and run in
about a second, so that tests/test_cocotb_infra.py can prove the infrastructure (and that it catches bugs)
without waiting for the accelerator.
"""

import cocotb

from .testbench import case_dir_from_environment, run_case, run_idle_check


@cocotb.test()
async def idle_after_reset(dut):
    """Without input the stand-in sends nothing, is not busy and every counter reads zero."""
    await run_idle_check(dut, case_dir_from_environment())


@cocotb.test()
async def stream_frames(dut):
    """Every input frame through the stand-in; every output word equals standin_reference's."""
    await run_case(dut, case_dir_from_environment())
