"""A read-only table whose read data leave a register: block RAM with its output register in use.

`TableRom(width, init, ports=n)`: `data[k]` is the word at the `addr[k]` presented LATENCY = 2 enabled clock
edges earlier (edge 1: the block RAM takes the address; edge 2: its output register takes the word).

A block RAM's read data straight out of the array are slow (an ECP5 DP16KD without its output register:
about 5.6 ns clock to output at speed 6, before any routing), and whatever they feed pays that inside the
same clock period: #10's routed designs had the activation tables' outputs into the interpolation
multiplier's operand registers among the late paths. Yosys does not use the DP16KD's output register
(its `brams_16kd.txt` always writes REGMODE NOREG), so a fabric register behind the memory only moves the
route, not the array's delay. Hence two forms of the same cycles:

* portable (simulation, plain Verilog, any family but ECP5): an Amaranth `Memory` with one synchronous
  read port per `ports`, each followed by a register;
* ECP5 (a platform whose `family` is "ecp5", as for hw/multiplier.py): DP16KD blocks in their 1024 x 18
  configuration with REGMODE OUTREG, the contents in their INITVAL parameters. Each block has two read
  ports (A and B), so ports are served in pairs by copies of the table; a word wider than 18 bits is
  split across blocks side by side, and a table deeper than 1024 words across blocks stacked, the block
  chosen after the output registers by the address bits delayed two edges (a multiplexer between
  registers, not behind the array).
"""

from __future__ import annotations

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .multiplier import targets_ecp5

__all__ = ["TableRom", "DP16KD_WIDTH", "DP16KD_DEPTH", "dp16kd_initvals"]

DP16KD_WIDTH = 18           # the data width of the 1024-word configuration
DP16KD_DEPTH = 1024
_INITVAL_WORDS = 16         # 18-bit words per INITVAL_xx parameter, each in a 20-bit field
_INITVAL_COUNT = DP16KD_DEPTH // _INITVAL_WORDS


def dp16kd_initvals(words) -> dict[str, Const]:
    """INITVAL_00 .. INITVAL_3F of a DP16KD in its 1024 x 18 configuration holding `words` (at most 1024
    unsigned integers below 2**18, the rest zero): word 16 * j + i in bits 20 * i .. 20 * i + 17 of
    INITVAL_j (the layout Yosys's own brams_map_16kd.v writes)."""
    words = list(words)
    if len(words) > DP16KD_DEPTH:
        raise ValueError(f"a DP16KD holds {DP16KD_DEPTH} words of {DP16KD_WIDTH} bits, got {len(words)} words")
    if any(not 0 <= w < (1 << DP16KD_WIDTH) for w in words):
        raise ValueError(f"DP16KD words must be unsigned integers below 2**{DP16KD_WIDTH}")
    words += [0] * (DP16KD_DEPTH - len(words))
    initvals = {}
    for j in range(_INITVAL_COUNT):
        value = 0
        for i in range(_INITVAL_WORDS):
            value |= words[_INITVAL_WORDS * j + i] << (20 * i)
        initvals[f"INITVAL_{j:02X}"] = Const(value, 20 * _INITVAL_WORDS)
    return initvals


class TableRom(wiring.Component):
    """A ROM of `len(init)` words of `width` bits with `ports` registered read ports, LATENCY = 2.

    Parameters
    ----------
    width : int
        Bits per word (>= 1).
    init : sequence of int
        The words, unsigned (0 <= word < 2**width); at least one.
    ports : int
        Read ports (>= 1).

    Attributes
    ----------
    en : In(1, init=1)
        Clock enable of both edges (the address register and the output register), all ports.
    addr : In(data.ArrayLayout(unsigned(addr_bits), ports))
    data : Out(data.ArrayLayout(unsigned(width), ports))
        `data[k]` is the word at the `addr[k]` of LATENCY enabled edges earlier. An address at or beyond
        `len(init)` reads an unspecified word.
    """

    LATENCY = 2

    def __init__(self, width: int, init, *, ports: int = 1):
        for name, value in (("width", width), ("ports", ports)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"TableRom: {name} must be an integer >= 1, got {value!r}")
        init = tuple(init)
        if not init:
            raise ValueError("TableRom: init must hold at least one word")
        bad = [w for w in init if not isinstance(w, int) or isinstance(w, bool) or not 0 <= w < (1 << width)]
        if bad:
            raise ValueError(f"TableRom: words must be unsigned integers below 2**{width}, got {bad[0]!r}")
        self.width = width
        self.init = init
        self.ports = ports
        self.addr_bits = max(1, (len(init) - 1).bit_length())
        super().__init__({
            "en": In(1, init=1),
            "addr": In(data.ArrayLayout(unsigned(self.addr_bits), ports)),
            "data": Out(data.ArrayLayout(unsigned(width), ports)),
        })

    def elaborate(self, platform):
        m = Module()
        if targets_ecp5(platform):
            self._elaborate_ecp5(m)
            return m
        m.submodules.memory = memory = Memory(shape=unsigned(self.width), depth=len(self.init), init=self.init)
        for port in range(self.ports):
            read = memory.read_port()
            output = Signal(unsigned(self.width), name=f"output_{port}", reset_less=True)
            m.d.comb += [read.addr.eq(self.addr[port]), read.en.eq(self.en), self.data[port].eq(output)]
            with m.If(self.en):
                m.d.sync += output.eq(read.data)
        return m

    def _elaborate_ecp5(self, m: Module):
        slices = -(-self.width // DP16KD_WIDTH)                 # blocks side by side
        banks = -(-len(self.init) // DP16KD_DEPTH)              # blocks stacked
        bank_bits = self.addr_bits - 10 if banks > 1 else 0
        for pair in range(-(-self.ports // 2)):                 # one copy of the table per two ports
            ports = list(range(2 * pair, min(2 * pair + 2, self.ports)))
            # per port, per bank: the registered word, slices concatenated
            words = {port: [Signal(unsigned(slices * DP16KD_WIDTH), name=f"word_{port}_{bank}")
                            for bank in range(banks)] for port in ports}
            for bank in range(banks):
                bank_words = self.init[bank * DP16KD_DEPTH:(bank + 1) * DP16KD_DEPTH]
                for part in range(slices):
                    shift = part * DP16KD_WIDTH
                    contents = [(w >> shift) & ((1 << DP16KD_WIDTH) - 1) for w in bank_words]
                    connections = {}
                    for side, port in zip("AB", ports + ports[:1]):    # an odd last port leaves B unused
                        used = port in ports and not (side == "B" and len(ports) == 1)
                        address = Cat(self.addr[port], Const(0, 10))[:10] if used else Const(0, 10)
                        connections.update({
                            f"i_CLK{side}": ClockSignal("sync"), f"i_CE{side}": self.en if used else Const(0),
                            f"i_OCE{side}": self.en if used else Const(0), f"i_WE{side}": Const(0),
                            f"i_RST{side}": Const(0),
                            **{f"i_CS{side}{k}": Const(0) for k in range(3)},
                            **{f"i_AD{side}{k}": Const(0) for k in range(4)},
                            **{f"i_AD{side}{k + 4}": address[k] for k in range(10)},
                            **{f"i_DI{side}{k}": Const(0) for k in range(DP16KD_WIDTH)},
                        })
                        if used:
                            connections.update({f"o_DO{side}{k}": words[port][bank][shift + k]
                                                for k in range(DP16KD_WIDTH)})
                    m.submodules[f"block_{pair}_{bank}_{part}"] = Instance(
                        "DP16KD",
                        p_DATA_WIDTH_A=DP16KD_WIDTH, p_DATA_WIDTH_B=DP16KD_WIDTH,
                        p_REGMODE_A="OUTREG", p_REGMODE_B="OUTREG",
                        p_RESETMODE="SYNC", p_ASYNC_RESET_RELEASE="SYNC",
                        p_CSDECODE_A="0b000", p_CSDECODE_B="0b000",
                        p_WRITEMODE_A="NORMAL", p_WRITEMODE_B="NORMAL", p_GSR="DISABLED",
                        **{f"p_{name}": value for name, value in dp16kd_initvals(contents).items()},
                        **connections)
            for port in ports:
                if banks == 1:
                    m.d.comb += self.data[port].eq(words[port][0][:self.width])
                    continue
                # the bank of the word now in the output registers: its address bits, two enabled edges on
                bank_1 = Signal(unsigned(bank_bits), name=f"bank_1_{port}", reset_less=True)
                bank_2 = Signal(unsigned(bank_bits), name=f"bank_2_{port}", reset_less=True)
                with m.If(self.en):
                    m.d.sync += [bank_1.eq(self.addr[port][10:]), bank_2.eq(bank_1)]
                selected = words[port][0]
                for bank in range(1, banks):
                    selected = Mux(bank_2 == bank, words[port][bank], selected)
                m.d.comb += self.data[port].eq(selected[:self.width])
