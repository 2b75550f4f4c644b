"""sparselstm: compress LSTMP models and run them on a sparse FPGA accelerator.

Layers (they do not reach into each other; each depends only on sparselstm.spec):
  sparselstm.spec -- what both sides share: user-facing errors, the number formats (Numerics) and the frozen
                     description of an encoded model
  sparselstm.sw   -- model import, float reference, compression, quantisation, encoder, golden model
  sparselstm.hw   -- Amaranth accelerator, elaborated from a frozen encoded model + hardware parameters
  sparselstm.sim  -- cocotb testbenches that check the generated Verilog against the golden model
"""

__version__ = "0.1.0"
