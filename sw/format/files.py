"""Writing an encoded model: the $readmemh text, the .npy twins and manifest.json (docs/format.md, "Files").

`hex_text` and `parse_hex` are each other's inverse; the validating reader (read.py) parses with `parse_hex`.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path

import numpy as np

from ...spec.encoded import MANIFEST, PE_MEMORIES, EncodedModel
from ...spec.errors import EncodedModelError
from ...spec.numerics import TABLE_NAMES
from .rows import pe_prefix

__all__ = ["hex_text", "parse_hex", "write_encoded"]

_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_HEX_VALUE = np.full(256, -1, dtype=np.int64)
for _value, _char in enumerate(b"0123456789abcdef"):
    _HEX_VALUE[_char] = _value
    _HEX_VALUE[ord(chr(_char).upper())] = _value


def hex_text(values: np.ndarray, bits: int) -> bytes:
    """$readmemh text: one word per line, lower-case, ceil(bits/4) digits, two's complement truncated."""
    values = np.asarray(values, dtype=np.int64)
    digits = (bits + 3) // 4
    if values.size == 0:
        return b""
    truncated = values & ((np.int64(1) << bits) - 1) if bits < 64 else values
    shifts = 4 * np.arange(digits - 1, -1, -1, dtype=np.int64)
    text = np.empty((values.size, digits + 1), dtype=np.uint8)
    text[:, :digits] = _HEX_DIGITS[(truncated[:, None] >> shifts) & 15]
    text[:, digits] = ord("\n")
    return text.tobytes()


def parse_hex(data: bytes, bits: int, name: str) -> np.ndarray:
    """The words of a hex file written by `hex_text` (unsigned, as stored); raises naming file and line."""
    digits = (bits + 3) // 4
    if not data:
        return np.zeros(0, dtype=np.int64)
    raw = np.frombuffer(data, dtype=np.uint8)
    if raw.size % (digits + 1) or np.any(raw[digits::digits + 1] != ord("\n")):
        for number, line in enumerate(data.split(b"\n"), start=1):
            if len(line) != digits:
                break
        raise EncodedModelError(f"{name}: line {number}: expected {digits} hexadecimal digits per line "
                                f"({bits}-bit words) and a final newline, got {line[:40]!r}")
    text = raw.reshape(-1, digits + 1)[:, :digits]
    nibbles = _HEX_VALUE[text]
    if np.any(nibbles < 0):
        line = int(np.argmax(np.any(nibbles < 0, axis=1))) + 1
        raise EncodedModelError(f"{name}: line {line}: not a hexadecimal number")
    shifts = 4 * np.arange(digits - 1, -1, -1, dtype=np.int64)
    return (nibbles << shifts).sum(axis=1) if bits < 63 else np.bitwise_or.reduce(nibbles << shifts, axis=1)


def _memory_files(encoded: EncodedModel):
    """(relative path, values, bits) of every memory file, without extension."""
    memories = encoded.memories
    widths = {"entries": memories["entry_bits"], "pointers": memories["pointer_bits"],
              "bias": memories["bias_bits"], "peephole": memories["peephole_bits"]}
    for image in encoded.pes:
        for memory in PE_MEMORIES:
            yield f"{pe_prefix(image.pe, encoded.n_pes)}_{memory}", getattr(image, memory), widths[memory]
    for name in TABLE_NAMES:
        yield f"tables/{name}", encoded.tables[name], encoded.numerics.unit_bits


def _npy_bytes(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(values, dtype=np.int64), allow_pickle=False)
    return buffer.getvalue()


_MEMORY_FILE = re.compile(r"pe\d+_(entries|pointers|bias|peephole)\.(hex|npy)")


def write_encoded(encoded: EncodedModel, outdir) -> Path:
    """Write the directory of docs/format.md. An existing manifest is removed first and the new one written
    last, so an interrupted write leaves no manifest; memory files of an earlier encoding with more PEs are
    removed, so that no stale image lies next to the new ones."""
    if not isinstance(encoded, EncodedModel):
        raise TypeError(f"write_encoded: expected an EncodedModel, got {type(encoded).__name__}")
    outdir = Path(outdir)
    (outdir / "tables").mkdir(parents=True, exist_ok=True)
    (outdir / MANIFEST).unlink(missing_ok=True)
    files = {}
    for stem, values, bits in _memory_files(encoded):
        for suffix, data in ((".hex", hex_text(values, bits)), (".npy", _npy_bytes(values))):
            (outdir / (stem + suffix)).write_bytes(data)
            files[stem + suffix] = {"sha256": hashlib.sha256(data).hexdigest(), "words": int(values.size),
                                    "bits": int(bits)}
    for path in outdir.iterdir():
        if _MEMORY_FILE.fullmatch(path.name) and path.name not in files:
            path.unlink()
    manifest = encoded.manifest()
    manifest["files"] = files
    (outdir / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return outdir
