"""The board side of the host link (docs/host-link.md): commands from a byte stream in, replies and output
frames to a byte stream out, input frames to the accelerator.

    rx bytes --> receive buffer (FIFO) --> parser: SYNC, type, length, payload -> frame buffer, CRC check
                                              | execute: IDENTIFY / RESET / COUNTERS: post a reply
                                              |          INPUT / INPUT_START: frame buffer --> i (accelerator)
    tx bytes <-- FrameTransmitter <-- one reply slot (IDENTITY, ACK, COUNTERS, ERROR) or o (accelerator): OUTPUT

A frame is executed only after its CRC matched. After an error the parser sends an ERROR frame and drops
bytes until the line has been quiet for `quiet_cycles`; a frame that stops arriving for `timeout_cycles` is an
error too, so no input makes the link hang.
"""

from __future__ import annotations

import operator
from functools import reduce

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import crc, data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..registered_fifo import RegisteredFifo
from ..skid import SkidBuffer
from ...spec.host_link import (COUNTERS_BYTES, ERROR_BYTES, IDENTITY_BYTES, MODEL_ID_BYTES, PROTOCOL_VERSION,
                               SYNC, WORD_BYTES, Command, LinkErrorCode, Reply)
from .frame_tx import FrameTransmitter
from .parameters import check_int

__all__ = ["HostLink"]

REPLY_BYTES = {Reply.IDENTITY: IDENTITY_BYTES, Reply.ACK: 0, Reply.COUNTERS: COUNTERS_BYTES,
               Reply.ERROR: ERROR_BYTES}
# shortest timeout and quiet time: a received byte takes a few cycles through the slice and the buffer to the
# parser, and the idle counter must not run out before it is there
RX_PATH_CYCLES = 8


def _word_field(layout, flag: str) -> int:
    """Width of `value` of an accelerator word layout {value, <flag>}; ValueError for other layouts."""
    if not isinstance(layout, data.StructLayout) or set(layout.members) != {"value", flag}:
        raise ValueError(f"expected a word layout with fields value and {flag}, got {layout!r}")
    return layout.members["value"].width


class HostLink(wiring.Component):
    """Runs the host link protocol between a byte stream pair and one accelerator.

    Ports:
      rx                 In(stream of bytes) from the UART receiver (or any byte source)
      rx_overrun         In(1): pulse, the byte source lost a byte (reported as an OVERRUN error)
      tx                 Out(stream of bytes) to the UART transmitter
      i                  Out(stream of the accelerator's input words {value, first})
      o                  In(stream of the accelerator's output words {value, last})
      busy, frames_done, cycles   In: the accelerator's status (read by COUNTERS)
      accelerator_reset  Out(1): high for RESET_PULSE_CYCLES cycles on RESET, from a register; the output
                         stream is left alone meanwhile, so the accelerator may take the reset a cycle late
                         (BoardCore registers it once more, to drive its reset net from one flip-flop)
      activity           Out(1): a byte was received or sent the cycle before (a register)
      error              Out(1): one-cycle pulse when an ERROR frame is posted

    Parameters: the accelerator's word layouts and sizes, the model id (MODEL_ID_BYTES bytes), the status
    widths, the receive buffer in bytes (a power of two holding at least one input frame), the timeout and
    quiet times in clock cycles, and the clock frequency (reported to the host).
    """

    def __init__(self, *, input_layout, output_layout, input_size: int, output_size: int, model_id: bytes,
                 counter_bits: int, cycle_counter_bits: int, rx_buffer_bytes: int, timeout_cycles: int,
                 quiet_cycles: int, clock_hz: int):
        self.act_bits = _word_field(input_layout, "first")
        if _word_field(output_layout, "last") != self.act_bits:
            raise ValueError("input and output words must have the same width")
        check_int("act_bits", self.act_bits, 2, 8 * WORD_BYTES)
        check_int("input_size", input_size, 1, 0x7FFF)
        check_int("output_size", output_size, 1, 0x7FFF)
        check_int("counter_bits", counter_bits, 1, 64)
        check_int("cycle_counter_bits", cycle_counter_bits, 1, 64)
        check_int("timeout_cycles", timeout_cycles, RX_PATH_CYCLES)
        check_int("quiet_cycles", quiet_cycles, RX_PATH_CYCLES)
        check_int("clock_hz", clock_hz, 1, 0xFFFFFFFF)
        check_int("rx_buffer_bytes", rx_buffer_bytes, 16, 0xFFFF)
        if rx_buffer_bytes & (rx_buffer_bytes - 1):
            raise ValueError(f"rx_buffer_bytes must be a power of two, got {rx_buffer_bytes}")
        if not isinstance(model_id, bytes) or len(model_id) != MODEL_ID_BYTES:
            raise ValueError(f"model_id must be {MODEL_ID_BYTES} bytes, got {model_id!r}")
        self.input_size, self.output_size, self.model_id = input_size, output_size, model_id
        self.rx_buffer_bytes, self.timeout_cycles, self.quiet_cycles = rx_buffer_bytes, timeout_cycles, quiet_cycles
        self.clock_hz = clock_hz
        super().__init__({
            "rx": In(stream.Signature(8)),
            "rx_overrun": In(1),
            "tx": Out(stream.Signature(8)),
            "i": Out(stream.Signature(input_layout)),
            "o": In(stream.Signature(output_layout)),
            "busy": In(1),
            "frames_done": In(counter_bits),
            "cycles": In(cycle_counter_bits),
            "accelerator_reset": Out(1),
            "activity": Out(1),
            "error": Out(1),
        })

    def identity(self) -> bytes:
        """The IDENTITY payload of this link."""
        le = lambda value, size: value.to_bytes(size, "little")
        return (le(PROTOCOL_VERSION, 1) + self.model_id + le(self.input_size, 2) + le(self.output_size, 2)
                + le(self.act_bits, 1) + le(self.rx_buffer_bytes, 2) + le(self.clock_hz, 4))

    def elaborate(self, platform):
        m = Module()
        m.submodules.rx_slice = rx_slice = SkidBuffer(8)
        # its flags are flip-flops (hw/registered_fifo.py): at 32 PEs the link is sometimes placed apart, and
        # SyncFIFOBuffered's level through its flags into its read pointer was then the worst path (#10: 10.65 ns)
        m.submodules.rx_buffer = rx_buffer = RegisteredFifo(8, self.rx_buffer_bytes)
        m.submodules.rx_crc = rx_crc = crc.catalog.CRC16_IBM_3740(8).create()
        m.submodules.framer = framer = FrameTransmitter()
        m.submodules.frame_buffer = frame_buffer = Memory(shape=8 * WORD_BYTES, depth=self.input_size, init=[])
        buffer_write = frame_buffer.write_port()
        buffer_read = frame_buffer.read_port()
        wiring.connect(m, framer.o, wiring.flipped(self.tx))
        wiring.connect(m, wiring.flipped(self.rx), rx_slice.i)

        # ---- receive buffer and line activity -----------------------------------------------------------
        # bytes reach the buffer through a slice: `rx.ready`, and so `received` and the source's overrun, come
        # from a flip-flop, not from the buffer's level (#10: the level through `w_rdy` into the idle counter's
        # reset, the overrun flag and the CRC was a 32-PE board top's worst path, 9.07 ns)
        wiring.connect(m, rx_slice.o, rx_buffer.w)
        # The parser reads a register loaded from the buffer, not the buffer's block RAM output, which comes
        # late in the cycle (an ECP5 build's worst path ran from it into the parser's state); at most a byte
        # every other cycle, ten times a UART's rate at 4 cycles a bit. No reset (it counts only with
        # `byte_valid`), so the board builds move it into the block RAM as its output register
        # (hw/boards/bram_registers.py; #10: the block RAM into it was the 16-PE board top's worst path, 7.54 ns)
        byte, byte_valid, take = Signal(8, reset_less=True), Signal(), Signal()
        m.d.comb += rx_buffer.r.ready.eq(~byte_valid)
        # the CRC takes each byte a cycle after the parser did, from flip-flops of its own: the parser's state
        # decode reaches those three, not the CRC's sixteen (#10: the decode into the CRC, 16 late register inputs
        # of a 32-PE board top with the link placed apart, 8.69 ns)
        crc_byte, crc_take, crc_begin = Signal(8, reset_less=True), Signal(), Signal()
        crc_byte_taken, crc_begun = Signal(), Signal()
        m.d.sync += [crc_byte.eq(byte), crc_byte_taken.eq(crc_take), crc_begun.eq(crc_begin)]
        m.d.comb += [rx_crc.data.eq(crc_byte), rx_crc.valid.eq(crc_byte_taken), rx_crc.start.eq(crc_begun)]
        with m.If(rx_buffer.r.valid & ~byte_valid):
            m.d.sync += [byte.eq(rx_buffer.r.payload), byte_valid.eq(1)]
        with m.Elif(take):
            m.d.sync += byte_valid.eq(0)
        nothing_received = ~byte_valid & rx_buffer.empty & ~rx_slice.o.valid
        received = self.rx.valid & self.rx.ready
        m.d.sync += self.activity.eq(received | (self.tx.valid & self.tx.ready))    # it drives a far LED
        longest_wait = max(self.timeout_cycles, self.quiet_cycles)
        idle_cycles = Signal(range(longest_wait + 1))      # since the last byte arrived, saturating
        with m.If(received):
            m.d.sync += idle_cycles.eq(0)
        with m.Elif(idle_cycles != longest_wait):
            m.d.sync += idle_cycles.eq(idle_cycles + 1)
        # `idle_cycles >= T` as flip-flops loaded from the counter's next value (#10: the counter's comparison
        # in front of the parser's state was a late path of the board top, 8.10 ns)
        timed_out, quiet_enough = Signal(), Signal()
        m.d.sync += [timed_out.eq(~received & (idle_cycles >= self.timeout_cycles - 1)),
                     quiet_enough.eq(~received & (idle_cycles >= self.quiet_cycles - 1))]
        starved = nothing_received & timed_out
        quiet = nothing_received & quiet_enough
        overrun_seen = Signal()
        with m.If(self.rx_overrun):
            m.d.sync += overrun_seen.eq(1)

        # ---- the reply slot ------------------------------------------------------------------------------
        reply_pending = Signal()
        reply_type = Signal(8)
        # the sender copies a reply's payload out as it sends the header, so the slot is free again then; a
        # flip-flop alone tells the parser so (#10: the sender's state in front of it was a late path)
        slot_free = ~reply_pending
        error_code = Signal(8)
        error_type = Signal(8)
        counters = Signal(8 * COUNTERS_BYTES)
        hold_output = Signal()              # a RESET is about to cut the output stream
        reset_second_cycle = Signal()
        m.d.sync += [self.accelerator_reset.eq(reset_second_cycle), reset_second_cycle.eq(0)]

        # ---- parser ----------------------------------------------------------------------------------------
        frame_type = Signal(8)
        length = Signal(16)
        count = Signal(16)
        low_byte = Signal(8)
        word_index = Signal(range(self.input_size))
        input_bytes = WORD_BYTES * self.input_size
        is_input = (frame_type == Command.INPUT) | (frame_type == Command.INPUT_START)
        known = is_input | (frame_type == Command.IDENTIFY) | (frame_type == Command.RESET) | \
            (frame_type == Command.COUNTERS)
        m.d.comb += [buffer_write.addr.eq(count >> 1), buffer_write.data.eq(Cat(low_byte, byte)),
                     buffer_read.addr.eq(word_index)]

        def fail(code: LinkErrorCode, with_type=True):
            m.d.sync += [error_code.eq(code), error_type.eq(frame_type if with_type else 0)]
            m.next = "ERROR"

        def in_frame(state, following, store=None, action=None):
            """A state reading one byte of a frame into the CRC (and into `store`, then `action()`, which may
            change the next state); errors for overrun and for a frame that stops arriving."""
            with m.State(state):
                with m.If(overrun_seen):
                    m.d.sync += overrun_seen.eq(0)
                    fail(LinkErrorCode.OVERRUN)
                with m.Elif(byte_valid):
                    m.d.comb += [take.eq(1), crc_take.eq(1)]
                    m.next = following
                    if store is not None:
                        m.d.sync += store.eq(byte)
                    if action is not None:
                        action()
                with m.Elif(starved):
                    fail(LinkErrorCode.TIMEOUT)

        with m.FSM(name="parser"):
            with m.State("HUNT"):
                with m.If(overrun_seen):
                    m.d.sync += overrun_seen.eq(0)
                    fail(LinkErrorCode.OVERRUN, with_type=False)
                with m.Elif(byte_valid):
                    m.d.comb += take.eq(1)
                    with m.If(byte == SYNC):
                        m.d.comb += crc_begin.eq(1)
                        m.d.sync += frame_type.eq(0)        # an error before the type names none
                        m.next = "TYPE"
            in_frame("TYPE", "LENGTH_LOW", store=frame_type)
            in_frame("LENGTH_LOW", "LENGTH_HIGH", store=length[:8])
            in_frame("LENGTH_HIGH", "CHECK_HEADER", store=length[8:])
            with m.State("CHECK_HEADER"):
                m.d.sync += count.eq(0)
                with m.If(~known):
                    fail(LinkErrorCode.UNKNOWN_TYPE)
                with m.Elif(length != is_input * input_bytes):
                    fail(LinkErrorCode.BAD_LENGTH)
                with m.Elif(is_input):
                    m.next = "PAYLOAD"
                with m.Else():
                    m.next = "CRC_HIGH"

            def payload_byte():
                m.d.sync += count.eq(count + 1)
                with m.If(count[0]):
                    m.d.comb += buffer_write.en.eq(1)
                with m.Else():
                    m.d.sync += low_byte.eq(byte)
                with m.If(count != input_bytes - 1):
                    m.next = "PAYLOAD"
            in_frame("PAYLOAD", "CRC_HIGH", action=payload_byte)
            in_frame("CRC_HIGH", "CRC_LOW")
            in_frame("CRC_LOW", "CRC_SETTLE")
            with m.State("CRC_SETTLE"):              # the CRC takes the last byte in this cycle
                m.next = "CHECK_CRC"
            with m.State("CHECK_CRC"):
                m.d.sync += word_index.eq(0)
                with m.If(~rx_crc.match_detected):
                    fail(LinkErrorCode.BAD_CRC)
                with m.Elif(is_input):
                    m.next = "READ_WORD"
                with m.Elif(frame_type == Command.RESET):
                    m.next = "RESET"
                with m.Else():
                    m.next = "REPLY"
            with m.State("READ_WORD"):               # the frame buffer's read port has one cycle of latency
                m.next = "SEND_WORD"
            with m.State("SEND_WORD"):
                m.d.comb += [self.i.valid.eq(1), self.i.payload.value.eq(buffer_read.data),
                             self.i.payload.first.eq((word_index == 0) & (frame_type == Command.INPUT_START))]
                with m.If(self.i.ready):
                    m.d.sync += word_index.eq(word_index + 1)
                    m.next = "READ_WORD"
                    with m.If(word_index == self.input_size - 1):
                        m.next = "HUNT"
            with m.State("RESET"):
                m.d.comb += hold_output.eq(1)
                with m.If(slot_free & ~framer.busy):
                    m.d.sync += [self.accelerator_reset.eq(1), reset_second_cycle.eq(1)]
                    m.d.sync += [reply_pending.eq(1), reply_type.eq(Reply.ACK)]
                    m.next = "HUNT"
            with m.State("REPLY"):
                with m.If(slot_free):
                    m.d.sync += [reply_pending.eq(1), reply_type.eq(frame_type | 0x80)]
                    m.next = "HUNT"
            with m.State("ERROR"):
                with m.If(slot_free):
                    m.d.comb += self.error.eq(1)
                    m.d.sync += [reply_pending.eq(1), reply_type.eq(Reply.ERROR)]
                    m.next = "DISCARD"
            with m.State("DISCARD"):
                m.d.comb += take.eq(1)
                with m.If(quiet):
                    m.d.sync += overrun_seen.eq(0)
                    m.next = "HUNT"

        # a COUNTERS reply's snapshot: taken every cycle the slot is free, so it holds the values of the cycle
        # its reply was posted in, with no enable from the parser's state on its 136 flip-flops
        with m.If(slot_free):
            m.d.sync += counters.eq(Cat(self.frames_done, Const(0, 64 - len(self.frames_done)),
                                        self.cycles, Const(0, 64 - len(self.cycles)), self.busy))

        # ---- transmit side: the reply slot first, then output frames ----------------------------------------
        reply_left = Signal(range(max(REPLY_BYTES.values())))       # bytes after the one offered
        reply_final = Signal()              # reply_left == 0, as a flip-flop: it decides the sender's next state
        # the reply's kind is decoded from its type into registers, its length and payload chosen by the kind into
        # registers, and the sender starts two cycles after the reply was posted, when they hold it (#10:
        # the type's decode in front of the payload registers was the board top's worst path, 8.40 ns, and
        # 8.31 ns with the payload registered behind it); the type and the payload's sources do not change
        # while a reply is pending
        reply_settling = Signal()
        reply_settled = Signal()
        reply_length = Signal(16)
        reply_left_first = Signal.like(reply_left)
        reply_single = Signal()
        reply_empty = Signal()
        m.d.sync += [reply_settling.eq(reply_pending), reply_settled.eq(reply_settling & reply_pending)]
        is_kind = {kind: Signal(name=f"reply_is_{kind.name.lower()}") for kind in REPLY_BYTES}
        m.d.sync += [flag.eq(reply_type == kind) for kind, flag in is_kind.items()]

        def by_kind(value_of, flags=is_kind):
            """The OR over the kinds of `value_of(kind)` where the type is that kind (`flags`): one gate per bit."""
            return reduce(operator.or_, [Mux(flag, value_of(kind), 0) for kind, flag in flags.items()])
        # a type of no kind (none is posted) gives length 0, as an ACK
        m.d.sync += [reply_length.eq(by_kind(lambda kind: REPLY_BYTES[kind])),
                     reply_left_first.eq(by_kind(lambda kind: max(REPLY_BYTES[kind] - 1, 0))),
                     reply_single.eq(by_kind(lambda kind: REPLY_BYTES[kind] == 1)),
                     reply_empty.eq(~by_kind(lambda kind: REPLY_BYTES[kind] != 0))]
        # the reply's payload is loaded whole and shifted out a byte at a time: no byte multiplexer lies
        # between the reply registers and the framer's output register; read only after a load, so no reset
        # (#10: the reset register into these registers' reset inputs, the board top's worst path with seed 1, 7.51 ns);
        # rotated rather than shifted, so no constant zero turns into a reset input (#10: 8.72 ns from the
        # framer's state into that reset, 16-PE seed 1 with a second cell slice)
        reply_bytes = Signal(8 * max(REPLY_BYTES.values()), reset_less=True)
        identity = Const(int.from_bytes(self.identity(), "little"), 8 * IDENTITY_BYTES)
        # loaded every cycle, read only once a reply has settled: no reset (#10: the reset net joined the kind
        # flags in front of these registers' reset inputs, the board top's worst path with seed 1, 8.21 ns)
        reply_payload = Signal.like(reply_bytes, reset_less=True)
        sources = {Reply.IDENTITY: identity, Reply.COUNTERS: counters, Reply.ERROR: Cat(error_code, error_type)}
        padded = {kind: Cat(source, Const(0, len(reply_payload) - len(source))) for kind, source in sources.items()}
        # each byte chosen by its own copy of the kind flags (`keep`: synthesis would merge the copies): a kind
        # without a bit zeroes it through the register's synchronous reset, and one flag's reset net over the
        # whole payload was the board top's worst path with seed 3 (#10: `reply_is_counters`, 8.49 ns)
        for j in range(len(reply_payload) // 8):
            byte_flags = {kind: Signal(name=f"reply_is_{kind.name.lower()}_{j}", attrs={"keep": 1}, reset_less=True)
                          for kind in sources}
            m.d.sync += [flag.eq(reply_type == kind) for kind, flag in byte_flags.items()]
            m.d.sync += reply_payload[8 * j:8 * j + 8].eq(by_kind(lambda kind: padded[kind][8 * j:8 * j + 8],
                                                                  byte_flags))
        output_word = Signal(8 * WORD_BYTES)
        high_byte = Signal()
        m.d.comb += output_word.eq(self.o.payload.value)     # sign-extended to the 16-bit wire format

        with m.FSM(name="sender"):
            with m.State("IDLE"):
                with m.If(reply_pending):    # before output frames, from the cycle its registers hold it
                    m.d.comb += [framer.header.valid.eq(reply_settled), framer.header.payload.type.eq(reply_type),
                                 framer.header.payload.length.eq(reply_length)]
                    with m.If(reply_settled & framer.header.ready):
                        m.d.sync += [reply_pending.eq(0), reply_bytes.eq(reply_payload),
                                     reply_left.eq(reply_left_first), reply_final.eq(reply_single)]
                        with m.If(~reply_empty):
                            m.next = "REPLY"
                with m.Elif(self.o.valid & ~hold_output & ~self.accelerator_reset):
                    m.d.comb += [framer.header.valid.eq(1), framer.header.payload.type.eq(Reply.OUTPUT),
                                 framer.header.payload.length.eq(WORD_BYTES * self.output_size)]
                    with m.If(framer.header.ready):
                        m.d.sync += high_byte.eq(0)
                        m.next = "OUTPUT"
            with m.State("REPLY"):
                m.d.comb += [framer.payload.valid.eq(1), framer.payload.payload.eq(reply_bytes[:8])]
                with m.If(framer.payload.ready):
                    m.d.sync += [reply_left.eq(reply_left - 1), reply_final.eq(reply_left == 1),
                                 reply_bytes.eq(reply_bytes.rotate_right(8))]
                    with m.If(reply_final):
                        m.next = "IDLE"
            with m.State("OUTPUT"):
                m.d.comb += [framer.payload.valid.eq(self.o.valid),
                             framer.payload.payload.eq(output_word.word_select(high_byte, 8)),
                             self.o.ready.eq(framer.payload.ready & high_byte)]
                with m.If(framer.payload.valid & framer.payload.ready):
                    m.d.sync += high_byte.eq(~high_byte)
                    with m.If(high_byte & self.o.payload.last):
                        m.next = "IDLE"
        return m
