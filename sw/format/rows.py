"""Dealing rows to PEs (docs/format.md, "Dealing rows to PEs") and the names and widths that follow from it.

Gate row `k*H + j` (gate k of cell j) goes to PE `j mod N` at local row `4*(j div N) + k`; projection row `r`
to PE `r mod N` at local row `r div N`. The encoder, the decoder and the reader all place rows only through
these functions.
"""

from __future__ import annotations

import numpy as np

from ...spec.encoded import GATES_PER_CELL
from ...spec.errors import ParameterError

__all__ = ["cells_of_pe", "pe_gate_rows", "pe_proj_rows", "gate_row_placement", "proj_row_placement", "pe_prefix",
           "memory_file", "pointer_bits"]


def _check_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}")
    return int(value)


def cells_of_pe(cell_size: int, n_pes: int, pe: int) -> int:
    """Cells held by PE `pe`: cells j with j mod N == pe, i.e. ceil((H - pe) / N), 0 when pe >= H."""
    cell_size, n_pes, pe = (_check_int(name, value) for name, value in
                            (("cell_size", cell_size), ("n_pes", n_pes), ("pe", pe)))
    if not 0 <= pe < n_pes:
        raise ParameterError(f"PE {pe} does not exist: PEs are numbered 0 .. {n_pes - 1}")
    return max(0, (cell_size - pe + n_pes - 1) // n_pes)


def pe_gate_rows(cell_size: int, n_pes: int, pe: int) -> np.ndarray:
    """Model rows `k*H + j` of the gate matrix held by PE `pe`, in local-row order (local_row = 4*q + k)."""
    cells = np.arange(pe, cell_size, n_pes, dtype=np.int64)
    return (np.arange(GATES_PER_CELL, dtype=np.int64)[None, :] * cell_size + cells[:, None]).ravel()


def pe_proj_rows(proj_size: int, n_pes: int, pe: int) -> np.ndarray:
    """Model rows of the projection held by PE `pe`, in local-row order (row r -> PE r mod N, local r div N)."""
    return np.arange(pe, proj_size, n_pes, dtype=np.int64)


def gate_row_placement(cell_size: int, n_pes: int) -> tuple[np.ndarray, np.ndarray]:
    """(PE, local row) of every model row k*H + j of a gate matrix."""
    rows = np.arange(GATES_PER_CELL * cell_size, dtype=np.int64)
    gate, cell = np.divmod(rows, cell_size)
    return cell % n_pes, GATES_PER_CELL * (cell // n_pes) + gate


def proj_row_placement(proj_size: int, n_pes: int) -> tuple[np.ndarray, np.ndarray]:
    """(PE, local row) of every row of a projection matrix."""
    rows = np.arange(proj_size, dtype=np.int64)
    return rows % n_pes, rows // n_pes


def pe_prefix(pe: int, n_pes: int) -> str:
    """`pe00`, `pe01`, ...: at least two digits, more when there are more than 100 PEs."""
    return f"pe{pe:0{max(2, len(str(n_pes - 1)))}d}"


def memory_file(pe: int, memory: str, n_pes: int) -> str:
    """The .hex file of one PE memory, e.g. `pe03_entries.hex`: the file the hardware reads."""
    return f"{pe_prefix(pe, n_pes)}_{memory}.hex"


def pointer_bits(max_entry_depth: int) -> int:
    """Unsigned width that holds every pointer 0 .. max_entry_depth (the one-past-the-end pointer)."""
    return max(1, int(max_entry_depth).bit_length())
