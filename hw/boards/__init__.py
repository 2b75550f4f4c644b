"""Board builds (docs/boards.md): board tops, the host link gateware (docs/host-link.md), the FPGA flows."""
