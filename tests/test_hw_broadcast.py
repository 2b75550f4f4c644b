# amaranth: UnusedElaboratable=no
"""The Broadcaster alone (hw/broadcast.py) against a model of the PEs' FIFOs: every word with a non-zero value
reaches every output once, in order and in the same cycle, zero words are dropped, and no FIFO takes more than
the ROOM_MARGIN words past its room flag, under random input gaps and random pops."""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import signed, unsigned
from amaranth.lib import data
from amaranth.sim import Simulator

from sparselstm.hw.broadcast import Broadcaster
from sparselstm.hw.design import ROOM_MARGIN
from sparselstm.hw.testing import stream_send

LAYOUT = data.StructLayout({"column": unsigned(8), "value": signed(8)})


# bursts: no zero words, no input gaps, slow FIFOs, so the words in flight when a flag falls fill the whole margin
@pytest.mark.parametrize("n_outputs, fifo_depth, seed, burst", [(1, 2, 0, False), (4, 3, 1, False), (16, 8, 2, False),
                                                              (1, 2, 3, True), (6, 4, 4, True), (16, 8, 5, True)])
def test_every_output_gets_the_nonzero_words_in_order_within_its_room(n_outputs, fifo_depth, seed, burst):
    rng = random.Random(seed)
    words = [{"column": k % 256, "value": rng.choice([1, -1]) * rng.randint(1, 127) if burst
              else rng.choice([0, rng.randint(-128, 127)])} for k in range(300)]
    expected = [(w["column"], w["value"]) for w in words if w["value"] != 0]
    dut = Broadcaster(LAYOUT, n_outputs)
    result = {}

    async def producer(ctx):
        await stream_send(ctx, dut.i, words, rng=rng, idle=0.0 if burst else 0.3)     # gaps in the input
        result["sent"] = True

    async def fifos(ctx):
        # each output's FIFO, as the PE's: takes what is offered, pops at its own random rate, raises `room`
        # (a register) while it holds fewer than fifo_depth words
        held = [[] for _ in range(n_outputs)]
        got = [[] for _ in range(n_outputs)]
        rates = [rng.uniform(0.1, 0.3) if burst else rng.uniform(0.2, 0.9) for _ in range(n_outputs)]
        room = flags = (1 << n_outputs) - 1
        most = 0
        for _ in range(6000):
            ctx.set(dut.room, room)
            _, _, *sampled = await ctx.tick().sample(
                *[port.valid for port in dut.o], *[port.payload for port in dut.o], dut.busy)
            valids, payloads, busy = sampled[:n_outputs], sampled[n_outputs:2 * n_outputs], sampled[-1]
            assert len(set(valids)) == 1, "a word must enter every FIFO in the same cycle"
            for p in range(n_outputs):
                if valids[p]:
                    held[p].append((payloads[p].column, payloads[p].value))
                if held[p] and rng.random() < rates[p]:
                    got[p].append(held[p].pop(0))
                most = max(most, len(held[p]))
                assert len(held[p]) <= fifo_depth + ROOM_MARGIN, "a FIFO overflowed its margin"
            # the flag is a register: what the FIFO's level was at the previous edge
            room, flags = flags, sum(int(len(held[p]) < fifo_depth) << p for p in range(n_outputs))
            if "sent" in result and all(len(g) + len(h) == len(expected) for g, h in zip(got, held)) and not busy:
                break
        result["got"] = [g + h for g, h in zip(got, held)]
        result["most"] = most

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer, background=True)
    sim.add_testbench(fifos)
    sim.run()
    assert all(got == expected for got in result["got"])
    assert result["most"] >= fifo_depth, "the slow FIFOs must have filled"
    if burst:
        assert result["most"] == fifo_depth + ROOM_MARGIN, "a burst must use the whole margin (else it is too big)"


def test_broadcaster_rejects_bad_parameters():
    with pytest.raises(TypeError, match="value"):
        Broadcaster(data.StructLayout({"column": unsigned(4)}), 2)
    with pytest.raises(ValueError, match="n_outputs"):
        Broadcaster(LAYOUT, 0)


def test_synthesis_keeps_the_ready_flag_for_upstream_apart(tmp_path, yosys):
    """`i.ready` comes from a flip-flop of its own, not `all_ready`, which loads the word register and the relays
    (#10: all_ready's fan-out into the scheduler was every late path of a 32-PE build): the two must survive
    synthesis as two flip-flops, as the board builds run it (`keep` onto the flip-flops, then synth_ecp5)."""
    import json
    import subprocess

    from amaranth.back import rtlil

    from sparselstm.hw.boards.flow import KEEP_FLIP_FLOPS
    from sparselstm.hw.memory_images import component_ports

    dut = Broadcaster(LAYOUT, 16)
    (tmp_path / "bcast.il").write_text(rtlil.convert(dut, name="bcast", emit_src=False, ports=component_ports(dut)))
    subprocess.run([*yosys, "-q", "-p", f"read_rtlil bcast.il; {KEEP_FLIP_FLOPS}; synth_ecp5 -top bcast; "
                    "write_json bcast.json"], cwd=tmp_path, check=True)
    module = json.loads((tmp_path / "bcast.json").read_text())["modules"]["bcast"]
    flop_of = {}                        # a flag's name -> the bit its flip-flop drives
    for cell in module["cells"].values():
        if cell["type"] == "TRELLIS_FF":
            q = cell["connections"]["Q"][0]
            flop_of.update({name: q for name, net in module["netnames"].items() if q in net["bits"]})
    assert flop_of["all_ready"] != flop_of["upstream_ready"]
    ready_bit = module["ports"]["i__ready"]["bits"][0]
    driver = next(cell for cell in module["cells"].values() if ready_bit in cell["connections"].get("Z", []))
    inputs = {bit for port, bits in driver["connections"].items() if port != "Z" for bit in bits}
    assert flop_of["upstream_ready"] in inputs and flop_of["all_ready"] not in inputs
