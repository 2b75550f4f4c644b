"""bench/sim_instructions.py: callgrind's functions summed per design module (no valgrind needed here)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import sim_instructions  # noqa: E402

ANNOTATED = """\
--------------------------------------------------------------------------------
1,979,699,420 (100.0%)  PROGRAM TOTALS
--------------------------------------------------------------------------------
57,503,504 ( 2.90%)  ???:Vtop___024root___eval_nba(Vtop___024root*) [/b/native_sim]
27,475,533 ( 1.39%)  ???:Vtop_sparselstm_top__02epe__Iz6___nba_sequent__TOP__h__dut__pe14__0(V*) [/b/sim]
24,963,438 ( 1.26%)  ???:Vtop_sparselstm_top__02epe___nba_sequent__TOP__h__dut__pe0__1(V*) [/b/sim]
 1,095,000 ( 0.05%)  ???:Vtop_sparselstm_top__02epe__02efifo___nba_sequent__TOP__h__dut__pe0__fifo__0(V*) [/b/sim]
   456,000 ( 0.02%)  ???:Vtop_sparselstm_top__02eunpacker__pi12__0___nba_sequent__TOP__h__dut__unpacker3__0(V*) [/b/sim]
 3,844,512 ( 0.19%)  ./libio/./libio/libioP.h:getc
"""


def test_functions_are_summed_per_module_whatever_the_instance_or_variant():
    modules = sim_instructions.by_module(ANNOTATED)
    assert modules["sparselstm_top.pe"] == 27_475_533 + 24_963_438
    assert modules["sparselstm_top.pe.fifo"] == 1_095_000
    assert modules["sparselstm_top.unpacker"] == 456_000
    assert modules[sim_instructions.OUTSIDE] == 57_503_504 + 3_844_512
    assert sum(modules.values()) == 57_503_504 + 27_475_533 + 24_963_438 + 1_095_000 + 456_000 + 3_844_512


def test_module_names_lose_the_parameter_variant():
    assert sim_instructions.design_module("sparselstm_top__02epe__Iz7") == "sparselstm_top.pe"
    assert sim_instructions.design_module("sparselstm_top__02eunpacker__pi12__0") == "sparselstm_top.unpacker"
    lane = "sparselstm_top__02eelementwise__02elane1"
    assert sim_instructions.design_module(lane) == "sparselstm_top.elementwise.lane1"
