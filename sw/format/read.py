"""The validating reader of an encoded model directory (docs/format.md, "manifest.json" and "Checks on reading").

Nothing of a directory is trusted: the manifest is checked key by key against the numerics and layer sizes it
states (manifest.py), every memory file against its sha256, depth and width, each .hex against its .npy twin,
the activation tables against the numerics, and finally every segment is walked and the accumulator widths
recomputed from the decoded weights. Every error is an EncodedModelError naming the file and the key.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

from ...spec.encoded import FORMAT_VERSION, MANIFEST, PE_MEMORIES, EncodedModel, PEImage
from ...spec.errors import EncodedModelError
from ...spec.numerics import TABLE_NAMES
from ..fixedpoint import activation_tables
from ..quantize import accumulator_bits
from .decode import decode
from .files import parse_hex
from .manifest import (FILE_KEYS, TOP_KEYS, Keys, expect, parse_delta_thresholds, parse_layer, parse_memories,
                       parse_numerics, parse_pe, read_manifest)
from .rows import pe_prefix, pointer_bits

__all__ = ["load_encoded"]


class _Listing:
    """The "files" section: each memory file's checksum, depth and width; every entry must be read."""

    def __init__(self, top: Keys):
        self.entries = top.get("files", dict)
        self.unread = set(self.entries)

    def entry(self, file_name: str, expected_words: int, expected_bits: int) -> tuple[str, int]:
        if file_name not in self.entries:
            raise EncodedModelError(f"{MANIFEST}: key 'files': {file_name!r} is not listed")
        self.unread.discard(file_name)
        keys = Keys(self.entries[file_name], f"files.{file_name}", FILE_KEYS)
        sha, words, bits = keys.get("sha256", str), keys.int_in("words", 0), keys.int_in("bits", 1)
        if words != expected_words:
            raise EncodedModelError(f"{MANIFEST}: key 'files.{file_name}.words': expected {expected_words} (the "
                                    f"memory's depth), got {words}")
        if bits != expected_bits:
            raise EncodedModelError(f"{MANIFEST}: key 'files.{file_name}.bits': expected {expected_bits} (the "
                                    f"memory's width), got {bits}")
        return sha, words

    def check_all_read(self) -> None:
        if self.unread:
            raise EncodedModelError(f"{MANIFEST}: key 'files': lists {sorted(self.unread)}, which the model "
                                    f"described does not have")


def _read_file(directory: Path, name: str, listing: _Listing, values_bits: int, expected_words: int) -> np.ndarray:
    """One memory file: listed, present, checksum, word count and width, .hex == .npy."""
    arrays = {}
    for suffix in (".hex", ".npy"):
        sha, words = listing.entry(name + suffix, expected_words, values_bits)
        path = directory / (name + suffix)
        if not path.is_file():
            raise EncodedModelError(f"{path}: missing (listed in {MANIFEST})")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != sha:
            raise EncodedModelError(f"{path}: sha256 checksum mismatch (expected {sha} from {MANIFEST}): the file "
                                    f"was modified or corrupted")
        if suffix == ".hex":
            array = parse_hex(data, values_bits, str(path))
        else:
            try:
                array = np.load(io.BytesIO(data), allow_pickle=False)
            except (ValueError, EOFError, OSError) as error:
                raise EncodedModelError(f"{path}: not a NumPy .npy file: {error}") from None
            if array.dtype != np.int64 or array.ndim != 1:
                raise EncodedModelError(f"{path}: expected a 1-D int64 array, got {array.dtype} {array.shape}")
        if array.size != words:
            raise EncodedModelError(f"{path}: expected {words} words (from {MANIFEST}), got {array.size}")
        arrays[suffix] = array
    hex_words, values = arrays[".hex"], arrays[".npy"]
    mask = (np.int64(1) << values_bits) - 1 if values_bits < 64 else np.int64(-1)
    mismatch = (values & mask) != hex_words
    if np.any(mismatch):
        index = int(np.argmax(mismatch))
        raise EncodedModelError(f"{directory / (name + '.hex')}: word {index} is {int(hex_words[index]):#x}, but "
                                f"{name}.npy holds {int(values[index])}")
    return values


def _check_width(values: np.ndarray, bits: int, signed: bool, path: Path) -> None:
    if values.size == 0:
        return
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    bad = (values < low) | (values > high)
    if np.any(bad):
        index = int(np.argmax(bad))
        raise EncodedModelError(f"{path}: word {index} = {int(values[index])} does not fit "
                                f"{'a signed' if signed else 'an unsigned'} {bits}-bit word")


def load_encoded(outdir) -> EncodedModel:
    """Read and validate an encoded model directory (docs/format.md, 'manifest.json').

    `outdir` is the directory or its manifest.json (a str or os.PathLike).
    """
    if not isinstance(outdir, (str, Path)) and not hasattr(outdir, "__fspath__"):
        raise TypeError(f"load_encoded: expected a path, got {type(outdir).__name__}")
    directory = Path(outdir)
    if directory.name == MANIFEST and directory.is_file():
        directory = directory.parent  # the manifest's path names its directory just as well
    top = Keys(read_manifest(directory), "", None)
    version = top.get("format_version", int)
    if version != FORMAT_VERSION:   # another version may well have other keys: say which version it is
        raise EncodedModelError(f"{MANIFEST}: key 'format_version': expected {FORMAT_VERSION}, got {version} "
                                f"(written by {top.value.get('producer', 'an unknown producer')})")
    top.only(TOP_KEYS)
    if "producer" in top.value:     # informational, and optional
        top.get("producer", str)
    numerics = parse_numerics(top)
    n_pes = top.int_in("n_pes", 1)
    layer_list = top.get("layers", list)
    if not layer_list:
        raise EncodedModelError(f"{MANIFEST}: key 'layers': expected at least one layer")
    layers = tuple(parse_layer(value, k, numerics) for k, value in enumerate(layer_list))
    for k in range(1, len(layers)):
        expect(layers[k].input_size, layers[k - 1].recurrent_size, f"layers[{k}].input_size",
               f" (layer {k - 1}'s recurrent_size)")
    if layers[-1].cell_order is not None and layers[-1].proj_size is None:
        raise EncodedModelError(f"{MANIFEST}: key 'layers[{len(layers) - 1}].cell_order': expected null: the "
                                f"last layer has no projection, so its cells are in the order of the outputs")
    memories = parse_memories(top, numerics, layers)
    delta_thresholds = parse_delta_thresholds(top, numerics, layers)
    widths = {"entries": (memories["entry_bits"], False), "pointers": (memories["pointer_bits"], False),
              "bias": (memories["bias_bits"], True), "peephole": (memories["peephole_bits"], True)}

    pe_list = top.get("pes", list)
    expect(len(pe_list), n_pes, "pes (length)", " (n_pes)")
    pes = [parse_pe(value, p, n_pes, layers) for p, value in enumerate(pe_list)]
    # Known before any memory file is read: a pointer must reach one past the deepest entry memory.
    expect(memories["pointer_bits"], pointer_bits(max(depths["entries"] for _, _, depths in pes)),
           "memories.pointer_bits", " (the width of the largest entry depth)")
    listing = _Listing(top)
    images = []
    for p, (_, fields, depths) in enumerate(pes):
        arrays = {}
        for memory in PE_MEMORIES:
            name = f"{pe_prefix(p, n_pes)}_{memory}"
            bits, signed = widths[memory]
            arrays[memory] = _read_file(directory, name, listing, bits, depths[memory])
            _check_width(arrays[memory], bits, signed, directory / f"{name}.npy")
        images.append(PEImage(**fields, **arrays))

    expected_tables = activation_tables(numerics)
    tables = {}
    for name in TABLE_NAMES:
        tables[name] = _read_file(directory, f"tables/{name}", listing, numerics.unit_bits,
                                  expected_tables[name].size)
        if not np.array_equal(tables[name], expected_tables[name]):
            raise EncodedModelError(f"{directory / 'tables' / (name + '.npy')}: differs from the table the "
                                    f"numerics in {MANIFEST} define (docs/numerics.md)")
    listing.check_all_read()

    encoded = EncodedModel(numerics=numerics, n_pes=n_pes, layers=layers, pes=tuple(images), tables=tables,
                           memories=memories, delta_thresholds=delta_thresholds)
    decoded = decode(encoded)   # walks every segment: pointers, rows, counts
    for k, (info, q) in enumerate(zip(layers, decoded.layers)):
        gate_bits, proj_bits = accumulator_bits(q, numerics)
        expect((info.gate_acc_bits, info.proj_acc_bits), (int(gate_bits), None if proj_bits is None else
                                                          int(proj_bits)),
               f"layers[{k}].(gate_acc_bits, proj_acc_bits)", " (from the decoded weights, biases and peepholes)")
    return encoded
