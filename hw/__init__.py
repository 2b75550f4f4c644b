"""Amaranth accelerator, elaborated from an encoded model and hardware parameters."""
