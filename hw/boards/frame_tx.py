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
      o        Out(stream of 8-bit bytes): the frame
      busy     Out(1): a frame is being sent
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
        sent = self.o.valid & self.o.ready
        m.d.comb += checksum.data.eq(self.o.payload)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.header.ready.eq(1)
                with m.If(self.header.valid):
                    m.d.sync += [frame_type.eq(self.header.payload.type),
                                 length.eq(self.header.payload.length),
                                 remaining.eq(self.header.payload.length)]
                    m.d.comb += checksum.start.eq(1)
                    m.next = "SYNC"
            with m.State("SYNC"):
                m.d.comb += [self.busy.eq(1), self.o.payload.eq(SYNC), self.o.valid.eq(1)]
                with m.If(sent):
                    m.next = "TYPE"
            for state, byte, following in (("TYPE", frame_type, "LENGTH_LOW"),
                                           ("LENGTH_LOW", length[:8], "LENGTH_HIGH"),
                                           ("LENGTH_HIGH", length[8:], "PAYLOAD")):
                with m.State(state):
                    m.d.comb += [self.busy.eq(1), self.o.payload.eq(byte), self.o.valid.eq(1),
                                 checksum.valid.eq(sent)]
                    with m.If(sent):
                        m.next = following
            with m.State("PAYLOAD"):
                m.d.comb += self.busy.eq(1)
                with m.If(remaining == 0):
                    m.next = "CRC_HIGH"
                with m.Else():
                    m.d.comb += [self.o.payload.eq(self.payload.payload), self.o.valid.eq(self.payload.valid),
                                 self.payload.ready.eq(self.o.ready), checksum.valid.eq(sent)]
                    with m.If(sent):
                        m.d.sync += remaining.eq(remaining - 1)
            with m.State("CRC_HIGH"):
                m.d.comb += [self.busy.eq(1), self.o.payload.eq(checksum.crc[8:]), self.o.valid.eq(1)]
                with m.If(sent):
                    m.next = "CRC_LOW"
            with m.State("CRC_LOW"):
                m.d.comb += [self.busy.eq(1), self.o.payload.eq(checksum.crc[:8]), self.o.valid.eq(1)]
                with m.If(sent):
                    m.next = "IDLE"
        return m
