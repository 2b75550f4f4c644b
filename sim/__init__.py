"""cocotb system tests of the generated Verilog against the golden model."""
