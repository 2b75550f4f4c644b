"""The encoded model (docs/format.md): dealing rows to PEs, encoder, decoder, writer and validating reader.

This is the single implementation of the sparse format on the software side: interleaved CSC per PE with
relative row indices and padding entries, one entry/pointer/bias/peephole memory per PE. The golden model
and the hardware generator read an encoded model only through the classes of `sparselstm.spec.encoded`,
which this package produces.

Modules: `rows` (which PE holds which row, file names, pointer width), `cells` (the cell order that
balances the PEs), `encode`, `decode` (walking segments as the hardware does), `files` (the $readmemh text
and `write_encoded`), `manifest` and `read` (the validating reader `load_encoded`).
"""

from .cells import balanced_cell_orders, can_reorder, inverse_order, permute_cells
from .decode import decode, segment_entries
from .encode import encode
from .files import hex_text, parse_hex, write_encoded
from .read import load_encoded
from .rows import cells_of_pe, memory_file, pe_gate_rows, pe_prefix, pe_proj_rows, pointer_bits

__all__ = ["encode", "decode", "segment_entries", "write_encoded", "load_encoded", "hex_text", "parse_hex",
           "cells_of_pe", "pe_gate_rows", "pe_proj_rows", "pe_prefix", "memory_file", "pointer_bits",
           "balanced_cell_orders", "permute_cells", "inverse_order", "can_reorder"]
