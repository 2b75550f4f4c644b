"""A board in the Amaranth simulator, served as a byte stream on a TCP socket: what a host driver opens as
`socket://HOST:PORT` (pyserial) instead of a real board's serial port.

The simulated board is the BoardCore (host link + accelerator) without the UART: bytes from the socket go
straight into the link's receive stream, the link's transmit stream goes back to the socket. One simulated
clock cycle takes far longer than a real one, so time-based link parameters are in cycles of the simulation.
"""

from __future__ import annotations

import socket
import threading

from amaranth.sim import Simulator

from ..design import AcceleratorDesign
from .core import BoardCore

__all__ = ["SimulatedBoard"]

POLL_CYCLES = 32            # cycles between socket polls while bytes are pending
SIMULATED_CLOCK_HZ = 100_000_000


class SimulatedBoard:
    """Serves one connection to a simulated board on 127.0.0.1; the port is chosen by the OS.

    Use as a context manager (`with SimulatedBoard(design, model_id) as board: ... board.url`); the
    simulation runs in a thread until the client disconnects. `inject_overrun()` makes the board's byte
    source report a lost byte (as the UART receiver would), to test the OVERRUN error.
    """

    def __init__(self, design: AcceleratorDesign, model_id: bytes, *, timeout_cycles: int = 1 << 20,
                 quiet_cycles: int = 2000, rx_buffer_bytes: int | None = None):
        self.core = BoardCore(design, model_id, clock_hz=SIMULATED_CLOCK_HZ, timeout_cycles=timeout_cycles,
                              quiet_cycles=quiet_cycles, rx_buffer_bytes=rx_buffer_bytes)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._overrun = threading.Event()
        self._thread = threading.Thread(target=self._run, name="simulated-board", daemon=True)
        self.error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    def inject_overrun(self) -> None:
        self._overrun.set()

    def __enter__(self) -> "SimulatedBoard":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._thread.join(timeout=30)
        self._listener.close()
        if self.error is not None and exc_info[0] is None:
            raise RuntimeError("the simulated board failed") from self.error

    def _run(self) -> None:
        try:
            connection, _ = self._listener.accept()
            with connection:
                connection.setblocking(False)
                self._simulate(connection)
        except BaseException as error:          # reported by __exit__ in the caller's thread
            self.error = error

    def _simulate(self, connection) -> None:
        core = self.core
        incoming = bytearray()

        async def bridge(ctx):
            outgoing = bytearray()
            cycle = 0
            ctx.set(core.tx.ready, 1)
            while True:
                if not incoming or cycle % POLL_CYCLES == 0:
                    if outgoing:
                        connection.sendall(outgoing)
                        outgoing.clear()
                    try:
                        chunk = connection.recv(65536)
                    except BlockingIOError:
                        chunk = None
                    if chunk == b"":
                        return                  # the host closed the connection
                    if chunk:
                        incoming.extend(chunk)
                ctx.set(core.rx_overrun, self._overrun.is_set())
                self._overrun.clear()
                ctx.set(core.rx.valid, bool(incoming))
                if incoming:
                    ctx.set(core.rx.payload, incoming[0])
                _, _, rx_ready, tx_valid, tx_byte = await ctx.tick().sample(core.rx.ready, core.tx.valid,
                                                                          core.tx.payload)
                if incoming and rx_ready:
                    del incoming[0]
                if tx_valid:
                    outgoing.append(tx_byte)
                cycle += 1

        simulator = Simulator(core)
        simulator.add_clock(1 / SIMULATED_CLOCK_HZ)
        simulator.add_testbench(bridge)
        simulator.run()
