"""The sending half of the host link's framing: SYNC, type, length, payload, CRC (docs/host-link.md)."""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import crc, data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...spec.host_link import SYNC

__all__ = ["FrameTransmitter", "frame_header_layout"]

frame_header_layout = data.StructLayout({"type": 8, "length": 16})


class FrameTransmitter(wiring.Component):
    """Wraps payload bytes into one frame per header.

    Ports:
      header   In(stream of {type, length}): starts a frame; taken when the previous frame is sent
      payload  In(stream of 8-bit bytes): exactly `length` bytes are taken per frame
      o        Out(stream of 8-bit bytes): the frame, from a register
      busy     Out(1): a frame is being sent

    Every byte goes through an output register, and `payload.ready` is that register's emptiness: no path
    runs from the UART's ready through this block into the sender, nor from the sender's byte multiplexers
    into the CRC, which is updated from the register as its byte leaves. At most a byte every other cycle,
    far above any UART's rate.
    """

    def __init__(self):
        super().__init__({
            "header": In(stream.Signature(frame_header_layout)),
            "payload": In(stream.Signature(8)),
            "o": Out(stream.Signature(8)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.crc = checksum = crc.catalog.CRC16_IBM_3740(8).create()
        frame_type = Signal(8)
        length = Signal(16)
        remaining = Signal(16)
        # remaining == 0 as a flip-flop (#10: the 16-bit test into the sender's payload registers' enable was a
        # late path of the board top, 8.57 ns)
        payload_done = Signal()
        offer = Signal(8)                   # the byte the current state would send
        offer_valid = Signal()
        offer_checked = Signal()            # the CRC covers it (type, length, payload)
        held_checked = Signal()
        taken = offer_valid & ~self.o.valid     # the output register is empty: it loads the offer
        state_busy = Signal()
        m.d.comb += [
            checksum.data.eq(self.o.payload),
            checksum.valid.eq(self.o.valid & self.o.ready & held_checked),
            self.busy.eq(state_busy | self.o.valid),
        ]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.header.ready.eq(1)
                with m.If(self.header.valid):
                    m.d.sync += [frame_type.eq(self.header.payload.type),
                                 length.eq(self.header.payload.length),
                                 remaining.eq(self.header.payload.length),
                                 payload_done.eq(self.header.payload.length == 0)]
                    m.d.comb += checksum.start.eq(1)     # the register holds the last CRC byte or nothing
                    m.next = "SYNC"
            with m.State("SYNC"):
                m.d.comb += [state_busy.eq(1), offer.eq(SYNC), offer_valid.eq(1)]
                with m.If(taken):
                    m.next = "TYPE"
            for state, byte, following in (("TYPE", frame_type, "LENGTH_LOW"),
                                           ("LENGTH_LOW", length[:8], "LENGTH_HIGH"),
                                           ("LENGTH_HIGH", length[8:], "PAYLOAD")):
                with m.State(state):
                    m.d.comb += [state_busy.eq(1), offer.eq(byte), offer_valid.eq(1), offer_checked.eq(1)]
                    with m.If(taken):
                        m.next = following
            with m.State("PAYLOAD"):
                m.d.comb += state_busy.eq(1)
                with m.If(payload_done):
                    m.next = "CRC_HIGH"
                with m.Else():
                    m.d.comb += [offer.eq(self.payload.payload), offer_valid.eq(self.payload.valid),
                                 offer_checked.eq(1), self.payload.ready.eq(~self.o.valid)]
                    with m.If(taken):
                        m.d.sync += [remaining.eq(remaining - 1), payload_done.eq(remaining == 1)]
            # the CRC is complete once the last payload byte has left the register
            with m.State("CRC_HIGH"):
                m.d.comb += [state_busy.eq(1), offer.eq(checksum.crc[8:]), offer_valid.eq(1)]
                with m.If(taken):
                    m.next = "CRC_LOW"
            with m.State("CRC_LOW"):
                m.d.comb += [state_busy.eq(1), offer.eq(checksum.crc[:8]), offer_valid.eq(1)]
                with m.If(taken):
                    m.next = "IDLE"

        with m.If(taken):
            m.d.sync += [self.o.payload.eq(offer), self.o.valid.eq(1), held_checked.eq(offer_checked)]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m
