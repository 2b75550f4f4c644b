"""The host side of the board link (docs/host-link.md): frames, and a driver on pyserial."""
