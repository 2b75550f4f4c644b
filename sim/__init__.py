"""cocotb system tests of the generated Verilog against the golden model.

Dependencies: sim reads the DUT from the generated Verilog and its sidecar JSON only (sim/dut.py), uses
sparselstm.spec, and takes its expected words from sw's golden model (sim/reference.py, the only module
that imports sw). It imports none of hw's code, except sim/standin.py, a stand-in DUT written in Amaranth,
which uses hw's Verilog helpers (hw.verilog, hw.sidecar) to write its Verilog and sidecar like the
accelerator's.

Modules: dut (the sidecar), case (the case files), frames (frames <-> payload words), checker, reference
(the model), result, harness (writes the HDL harness that drives and collects the streams inside the
simulator, and reads its event log); harness_bench, bench, streams and test_dut run inside the simulator
(cocotb); runner and tools build and run it from Python.

board_server (with board_server.cpp) is no testbench: it verilates the board top written by
hw/boards/sim_verilog.py (from its Verilog and sidecar JSON, like the DUT) and serves it on a socket.
"""
