"""The encoded model (docs/format.md): encoder, decoder, writer and validating reader.

This is the single implementation of the sparse format on the software side: interleaved CSC per PE with
relative row indices and padding entries, one entry/pointer/bias/peephole memory per PE. The golden model
and the hardware generator read an encoded model only through the classes of sparselstm.spec.encoded,
which this module produces.

Encoding is vectorised: the non-zeros of a whole hardware matrix (all PEs) are sorted once by
(PE, column, local row); gaps, padding counts and entry addresses follow from differences and cumulative
sums, so there is no Python loop over non-zeros (only over PEs, layers and files).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..spec.encoded import (FORMAT_VERSION, GATES_MATRIX, GATES_PER_CELL, MANIFEST, MAX_ENTRY_BITS, PE_MEMORIES,
                            PEEPHOLES_PER_CELL, PROJ_MATRIX, EncodedModel, LayerInfo, PEImage, Segment,
                            SegmentEntries)
from ..spec.errors import EncodedModelError, ParameterError
from ..spec.numerics import TABLE_NAMES, Numerics
from .fixedpoint import activation_tables
from .pruning import check_pe_count
from .quantize import accumulator_bits
from .quantized import QuantizedLayer, QuantizedModel

# ----------------------------------------------------------------------------------------------------------
# Dealing rows to PEs (docs/format.md, "Dealing rows to PEs")


def cells_of_pe(cell_size: int, n_pes: int, pe: int) -> int:
    """Cells held by PE `pe`: cells j with j mod N == pe, i.e. ceil((H - pe) / N), 0 when pe >= H."""
    if not 0 <= pe < n_pes:
        raise ParameterError(f"PE {pe} does not exist: PEs are numbered 0 .. {n_pes - 1}")
    return max(0, (cell_size - pe + n_pes - 1) // n_pes)


def pe_gate_rows(cell_size: int, n_pes: int, pe: int) -> np.ndarray:
    """Model rows `k*H + j` of the gate matrix held by PE `pe`, in local-row order (local_row = 4*q + k)."""
    cells = np.arange(pe, cell_size, n_pes, dtype=np.int64)
    return (np.arange(GATES_PER_CELL, dtype=np.int64)[None, :] * cell_size + cells[:, None]).ravel()


def pe_proj_rows(proj_size: int, n_pes: int, pe: int) -> np.ndarray:
    """Model rows of the projection held by PE `pe`, in local-row order (row r -> PE r mod N, local r div N)."""
    return np.arange(pe, proj_size, n_pes, dtype=np.int64)


def _gate_row_placement(cell_size: int, n_pes: int) -> tuple[np.ndarray, np.ndarray]:
    """(PE, local row) of every model row k*H + j of a gate matrix."""
    rows = np.arange(GATES_PER_CELL * cell_size, dtype=np.int64)
    gate, cell = np.divmod(rows, cell_size)
    return cell % n_pes, GATES_PER_CELL * (cell // n_pes) + gate


def _proj_row_placement(proj_size: int, n_pes: int) -> tuple[np.ndarray, np.ndarray]:
    rows = np.arange(proj_size, dtype=np.int64)
    return rows % n_pes, rows // n_pes


class _EncodedMatrix(NamedTuple):
    words: np.ndarray        # entries of all PEs, PE after PE
    pe_offsets: np.ndarray   # (N+1,) PE p's entries are words[pe_offsets[p]:pe_offsets[p+1]]
    pointers: np.ndarray     # (N, C+1) relative to the PE's first entry of this matrix
    nonzeros: np.ndarray     # (N,)
    padding: np.ndarray      # (N,)


def _encode_matrix(w: np.ndarray, row_pe: np.ndarray, row_local: np.ndarray, n_pes: int,
                   numerics: Numerics) -> _EncodedMatrix:
    """Interleaved CSC with relative indices of one hardware matrix for all PEs at once."""
    index_bits, weight_bits = numerics.index_bits, numerics.weight_bits
    columns = w.shape[1]
    rows_nz, cols_nz = np.nonzero(w)
    order = np.lexsort((row_local[rows_nz], cols_nz, row_pe[rows_nz]))  # by PE, then column, then local row
    rows_nz, cols_nz = rows_nz[order], cols_nz[order]
    pe, local, weight = row_pe[rows_nz], row_local[rows_nz], w[rows_nz, cols_nz]

    group = pe * columns + cols_nz
    previous = np.empty_like(local)
    previous[:1] = -1
    previous[1:] = local[:-1]
    starts_column = np.ones(group.size, dtype=bool)
    starts_column[1:] = group[1:] != group[:-1]
    previous[starts_column] = -1           # the cursor starts at -1 in every column
    gap = local - previous - 1             # zero rows skipped before this non-zero
    n_padding = gap >> index_bits          # each padding entry advances 2**index_bits rows
    index = gap & ((1 << index_bits) - 1)
    length = n_padding + 1

    ends = np.cumsum(length)
    words = np.full(int(ends[-1]) if ends.size else 0, (1 << index_bits) - 1, dtype=np.int64)  # padding word
    words[ends - 1] = ((weight & ((1 << weight_bits) - 1)) << index_bits) | index

    per_column = np.bincount(group, weights=length, minlength=n_pes * columns).astype(np.int64)
    per_column = per_column.reshape(n_pes, columns)
    pointers = np.zeros((n_pes, columns + 1), dtype=np.int64)
    np.cumsum(per_column, axis=1, out=pointers[:, 1:])
    pe_offsets = np.zeros(n_pes + 1, dtype=np.int64)
    np.cumsum(pointers[:, -1], out=pe_offsets[1:])
    nonzeros = np.bincount(pe, minlength=n_pes).astype(np.int64)
    padding = np.bincount(pe, weights=n_padding, minlength=n_pes).astype(np.int64)
    return _EncodedMatrix(words, pe_offsets, pointers, nonzeros, padding)


def _check_range(values: np.ndarray, bits: int, what: str) -> None:
    if values.size == 0:
        return
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    smallest, largest = int(values.min()), int(values.max())
    if smallest < low or largest > high:
        raise ParameterError(f"{what}: values span [{smallest}, {largest}], which does not fit a signed "
                             f"{bits}-bit word [{low}, {high}]")


def encode(qmodel: QuantizedModel, n_pes: int) -> EncodedModel:
    """Encode a quantised model for `n_pes` PEs (docs/format.md)."""
    n_pes = check_pe_count(n_pes)
    if not isinstance(qmodel, QuantizedModel):
        raise ParameterError(f"encode: expected a QuantizedModel, got {type(qmodel).__name__}")
    numerics = qmodel.numerics
    entry_bits = numerics.weight_bits + numerics.index_bits
    if entry_bits > MAX_ENTRY_BITS:
        raise ParameterError(f"weight_bits + index_bits = {entry_bits} exceeds the supported {MAX_ENTRY_BITS}")

    layers, matrices = [], []
    for k, q in enumerate(qmodel.layers):
        _check_range(q.w_gates, numerics.weight_bits, f"layer {k} gate weights")
        gate_acc_bits, proj_acc_bits = accumulator_bits(q, numerics)
        layers.append(LayerInfo(
            input_size=q.input_size, cell_size=q.cell_size, proj_size=q.proj_size,
            recurrent_size=q.recurrent_size, peephole=q.has_peephole, fw_x=q.fw_x, fw_r=q.fw_r,
            fw_p=q.fw_p, facc=q.facc, fp=q.fp, gate_acc_bits=int(gate_acc_bits),
            proj_acc_bits=None if proj_acc_bits is None else int(proj_acc_bits)))
        placed = [(GATES_MATRIX, _encode_matrix(q.w_gates, *_gate_row_placement(q.cell_size, n_pes), n_pes,
                                                numerics))]
        if q.has_projection:
            _check_range(q.w_proj, numerics.weight_bits, f"layer {k} projection weights")
            placed.append((PROJ_MATRIX, _encode_matrix(q.w_proj, *_proj_row_placement(q.proj_size, n_pes),
                                                       n_pes, numerics)))
        matrices.append(placed)

    bias_bits = max(layer.gate_acc_bits for layer in layers)
    if bias_bits > MAX_ENTRY_BITS:
        raise ParameterError(f"the gate accumulators need {bias_bits} bits (biases or weights of extreme scale); "
                             f"the encoded format holds words of at most {MAX_ENTRY_BITS} bits")
    for k, q in enumerate(qmodel.layers):
        _check_range(q.bias, bias_bits, f"layer {k} bias")
        if q.has_peephole:
            _check_range(q.peephole, numerics.peephole_bits, f"layer {k} peepholes")

    images = []
    for p in range(n_pes):
        entries, pointers, segments, biases, peepholes = [], [], [], [], []
        entry_base = ptr_base = bias_base = peephole_base = 0
        bias_bases, peephole_bases = [], []
        for k, (q, placed) in enumerate(zip(qmodel.layers, matrices)):
            for matrix, enc in placed:
                words = enc.words[enc.pe_offsets[p]:enc.pe_offsets[p + 1]]
                rows = (GATES_PER_CELL * cells_of_pe(q.cell_size, n_pes, p) if matrix == GATES_MATRIX
                        else len(pe_proj_rows(q.proj_size, n_pes, p)))
                segments.append(Segment(layer=k, matrix=matrix, entry_base=entry_base, entry_count=words.size,
                                        nonzeros=int(enc.nonzeros[p]), padding=int(enc.padding[p]),
                                        ptr_base=ptr_base, columns=enc.pointers.shape[1] - 1, rows=rows))
                entries.append(words)
                pointers.append(enc.pointers[p] + entry_base)
                entry_base += words.size
                ptr_base += enc.pointers.shape[1]
            cells = np.arange(p, q.cell_size, n_pes)
            biases.append(q.bias[pe_gate_rows(q.cell_size, n_pes, p)])
            bias_bases.append(bias_base)
            bias_base += biases[-1].size
            peephole_bases.append(peephole_base)
            if q.has_peephole:
                peepholes.append(q.peephole[:, cells].T.ravel())   # index 3*q + k'
                peephole_base += peepholes[-1].size
        images.append(PEImage(
            pe=p,
            cells=tuple(cells_of_pe(q.cell_size, n_pes, p) for q in qmodel.layers),
            proj_rows=tuple(len(pe_proj_rows(q.proj_size, n_pes, p)) if q.has_projection else 0
                            for q in qmodel.layers),
            entries=np.concatenate(entries), pointers=np.concatenate(pointers),
            bias=np.concatenate(biases), peephole=np.concatenate(peepholes) if peepholes else np.zeros(0),
            segments=tuple(segments), bias_base=tuple(bias_bases), peephole_base=tuple(peephole_bases)))

    max_depth = max(int(image.entries.size) for image in images)
    memories = {"entry_bits": entry_bits, "pointer_bits": _pointer_bits(max_depth),
                "bias_bits": bias_bits, "peephole_bits": numerics.peephole_bits}
    return EncodedModel(numerics=numerics, n_pes=n_pes, layers=tuple(layers), pes=tuple(images),
                        tables=activation_tables(numerics), memories=memories)


def _pointer_bits(max_entry_depth: int) -> int:
    """Unsigned width that holds every pointer 0 .. max_entry_depth (the one-past-the-end pointer)."""
    return max(1, int(max_entry_depth).bit_length())


# ----------------------------------------------------------------------------------------------------------
# Decoder


def _file(pe: int, memory: str, n_pes: int) -> str:
    return f"{pe_prefix(pe, n_pes)}_{memory}.hex"  # named in errors: the file the hardware reads


def pe_prefix(pe: int, n_pes: int) -> str:
    """`pe00`, `pe01`, ...: at least two digits, more when there are more than 100 PEs."""
    return f"pe{pe:0{max(2, len(str(n_pes - 1)))}d}"


def _signed(values: np.ndarray, bits: int) -> np.ndarray:
    sign = np.int64(1) << (bits - 1)
    return ((values & ((np.int64(1) << bits) - 1)) ^ sign) - sign


def _walk_segment(encoded: EncodedModel, image: PEImage, segment: Segment) -> SegmentEntries:
    numerics = encoded.numerics
    index_bits = numerics.index_bits
    entries_file = _file(image.pe, "entries", encoded.n_pes)
    pointers_file = _file(image.pe, "pointers", encoded.n_pes)
    where = f"PE {image.pe} layer {segment.layer} {segment.matrix}"
    ptr = image.pointers[segment.ptr_base:segment.ptr_base + segment.columns + 1]
    first, last = segment.entry_base, segment.entry_base + segment.entry_count
    if ptr.size != segment.columns + 1:
        raise EncodedModelError(f"{pointers_file}: {where}: expected {segment.columns + 1} pointers from "
                                f"address {segment.ptr_base}, the memory has {image.pointers.size} words")
    if last > image.entries.size:
        raise EncodedModelError(f"{entries_file}: {where}: segment ends at {last}, the memory has "
                                f"{image.entries.size} words")
    if ptr[0] != first or ptr[-1] != last:
        raise EncodedModelError(f"{pointers_file}: {where}: pointers must run from entry_base {first} to "
                                f"entry_base + entry_count = {last}, got {int(ptr[0])} .. {int(ptr[-1])}")
    steps = np.diff(ptr)
    if np.any(steps < 0):
        column = int(np.flatnonzero(steps < 0)[0])
        raise EncodedModelError(f"{pointers_file}: {where}: pointers must be non-decreasing, but column "
                                f"{column} starts at {int(ptr[column])} and ends at {int(ptr[column + 1])}")
    words = image.entries[first:last]
    column = np.repeat(np.arange(segment.columns, dtype=np.int64), steps)
    index = words & ((1 << index_bits) - 1)
    weight = _signed(words >> index_bits, numerics.weight_bits)
    advance = np.cumsum(index + 1)
    column_start = np.concatenate(([0], advance))[ptr[:-1] - first]   # cursor advance before each column
    local_row = advance - column_start[column] - 1
    if local_row.size and int(local_row.max()) >= segment.rows:
        bad = int(np.argmax(local_row >= segment.rows))
        raise EncodedModelError(f"{entries_file}: {where}: entry at address {first + bad} (column "
                                f"{int(column[bad])}) lands on local row {int(local_row[bad])}, but the PE has "
                                f"only {segment.rows} rows in this segment")
    padding = weight == 0
    column_end = np.zeros(words.size, dtype=bool)
    column_end[ptr[1:][steps > 0] - first - 1] = True
    stray = padding & ((index != (1 << index_bits) - 1) | column_end)
    if np.any(stray):
        bad = int(np.argmax(stray))
        raise EncodedModelError(f"{entries_file}: {where}: entry at address {first + bad} has weight 0 but is "
                                f"not a padding entry (padding is (0, {(1 << index_bits) - 1}) followed by a "
                                f"non-zero in the same column)")
    n_padding = int(np.count_nonzero(padding))
    if words.size - n_padding != segment.nonzeros or n_padding != segment.padding:
        raise EncodedModelError(f"{entries_file}: {where}: manifest.json says {segment.nonzeros} non-zeros and "
                                f"{segment.padding} padding entries, the memory holds {words.size - n_padding} "
                                f"and {n_padding}")
    real = np.flatnonzero(~padding)
    target_row = local_row[real[np.searchsorted(real, np.arange(words.size))]] if real.size else local_row
    return SegmentEntries(column, local_row, weight, index, padding, target_row)


def segment_entries(encoded: EncodedModel, pe: int, layer: int, matrix: str) -> SegmentEntries:
    """Walk one segment as the hardware does (cursor per column); raises EncodedModelError if the segment is
    inconsistent (pointers, rows out of range, counts, stray zero entries)."""
    return _walk_segment(encoded, encoded.pes[pe], encoded.pes[pe].segment(layer, matrix))


def decode(encoded: EncodedModel) -> QuantizedModel:
    """The quantised model an encoded model holds (the inverse of `encode`); walks and checks every segment."""
    n_pes = encoded.n_pes
    layers = []
    for k, info in enumerate(encoded.layers):
        h, columns = info.cell_size, info.columns
        w_gates = np.zeros((GATES_PER_CELL * h, columns), dtype=np.int64)
        bias = np.zeros(GATES_PER_CELL * h, dtype=np.int64)
        peephole = np.zeros((PEEPHOLES_PER_CELL, h), dtype=np.int64) if info.peephole else None
        w_proj = np.zeros((info.proj_size, h), dtype=np.int64) if info.proj_size is not None else None
        for image in encoded.pes:
            rows = pe_gate_rows(h, n_pes, image.pe)
            walked = _walk_segment(encoded, image, image.segment(k, GATES_MATRIX))
            real = ~walked.padding
            w_gates[rows[walked.local_row[real]], walked.column[real]] = walked.weight[real]
            bias[rows] = image.bias[image.bias_base[k]:image.bias_base[k] + rows.size]
            if peephole is not None:
                cells = np.arange(image.pe, h, n_pes)
                base = image.peephole_base[k]
                words = image.peephole[base:base + PEEPHOLES_PER_CELL * cells.size]
                peephole[:, cells] = words.reshape(cells.size, PEEPHOLES_PER_CELL).T
            if w_proj is not None:
                rows = pe_proj_rows(info.proj_size, n_pes, image.pe)
                walked = _walk_segment(encoded, image, image.segment(k, PROJ_MATRIX))
                real = ~walked.padding
                w_proj[rows[walked.local_row[real]], walked.column[real]] = walked.weight[real]
        layers.append(QuantizedLayer(
            input_size=info.input_size, cell_size=h, recurrent_size=info.recurrent_size, w_gates=w_gates,
            fw_x=info.fw_x, fw_r=info.fw_r, facc=info.facc, bias=bias, peephole=peephole, fp=info.fp,
            w_proj=w_proj, fw_p=info.fw_p))
    return QuantizedModel(encoded.numerics, tuple(layers))


# ----------------------------------------------------------------------------------------------------------
# Files

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


# ----------------------------------------------------------------------------------------------------------
# Reader


class _Keys:
    """Typed access to one JSON object of the manifest with errors naming the key path."""

    def __init__(self, value, path: str):
        if not isinstance(value, dict):
            raise EncodedModelError(f"{MANIFEST}: {path or 'top level'}: expected a JSON object, "
                                    f"got {type(value).__name__}")
        self.value, self.path = value, path

    def _name(self, key) -> str:
        return f"{self.path}.{key}" if self.path else str(key)

    def get(self, key, kind, nullable=False):
        if key not in self.value:
            raise EncodedModelError(f"{MANIFEST}: missing key {self._name(key)!r}")
        value = self.value[key]
        if value is None and nullable:
            return None
        ok = (isinstance(value, int) and not isinstance(value, bool)) if kind is int else isinstance(value, kind)
        if not ok:
            expected = {int: "an integer", bool: "true or false", str: "a string", list: "a list",
                        dict: "an object"}[kind] + (" or null" if nullable else "")
            raise EncodedModelError(f"{MANIFEST}: key {self._name(key)!r}: expected {expected}, got {value!r}")
        return value

    def int_at_least(self, key, minimum: int, nullable=False):
        value = self.get(key, int, nullable)
        if value is not None and value < minimum:
            raise EncodedModelError(f"{MANIFEST}: key {self._name(key)!r}: expected an integer >= {minimum}, "
                                    f"got {value}")
        return value

    def int_list(self, key, length: int) -> list:
        values = self.get(key, list)
        if len(values) != length or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise EncodedModelError(f"{MANIFEST}: key {self._name(key)!r}: expected a list of {length} "
                                    f"integers, got {values!r}")
        return values

    def child(self, key) -> "_Keys":
        return _Keys(self.get(key, dict), self._name(key))


def _expect(actual, expected, key: str, why: str = "") -> None:
    if actual != expected:
        raise EncodedModelError(f"{MANIFEST}: key {key!r}: expected {expected!r}{why}, got {actual!r}")


def _read_manifest(directory: Path) -> dict:
    if not directory.exists():
        raise EncodedModelError(f"{directory}: not found (expected an encoded model directory written by "
                                f"`sparselstm encode`)")
    if not directory.is_dir():
        raise EncodedModelError(f"{directory}: not a directory (expected an encoded model written by "
                                f"`sparselstm encode`)")
    path = directory / MANIFEST
    if not path.is_file():
        raise EncodedModelError(f"{path}: missing (is {directory} an encoded model directory?)")
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise EncodedModelError(f"{path}: not valid JSON: {error}") from None


def _parse_layer(keys: _Keys) -> LayerInfo:
    peephole = keys.get("peephole", bool)
    proj_size = keys.int_at_least("proj_size", 1, nullable=True)
    info = LayerInfo(
        input_size=keys.int_at_least("input_size", 1), cell_size=keys.int_at_least("cell_size", 1),
        proj_size=proj_size, recurrent_size=keys.int_at_least("recurrent_size", 1), peephole=peephole,
        fw_x=keys.get("fw_x", int), fw_r=keys.get("fw_r", int), fw_p=keys.get("fw_p", int, nullable=True),
        facc=keys.get("facc", int), fp=keys.get("fp", int, nullable=True),
        gate_acc_bits=keys.int_at_least("gate_acc_bits", 2),
        proj_acc_bits=keys.int_at_least("proj_acc_bits", 2, nullable=True))
    expected_recurrent = proj_size if proj_size is not None else info.cell_size
    _expect(info.recurrent_size, expected_recurrent, f"{keys.path}.recurrent_size", " (proj_size, or cell_size)")
    _expect(info.fw_p is None, proj_size is None, f"{keys.path}.fw_p is null", " (null exactly without projection)")
    _expect(info.proj_acc_bits is None, proj_size is None, f"{keys.path}.proj_acc_bits is null",
            " (null exactly without projection)")
    _expect(info.fp is None, not peephole, f"{keys.path}.fp is null", " (null exactly without peepholes)")
    return info


def _read_file(directory: Path, name: str, listing: dict, values_bits: int, expected_words: int) -> np.ndarray:
    """One memory file: listed, present, checksum, word count and width, .hex == .npy."""
    arrays = {}
    for suffix in (".hex", ".npy"):
        file_name = name + suffix
        if file_name not in listing:
            raise EncodedModelError(f"{MANIFEST}: key 'files': {file_name!r} is not listed")
        entry = _Keys(listing[file_name], f"files.{file_name}")
        sha, words, bits = entry.get("sha256", str), entry.int_at_least("words", 0), entry.int_at_least("bits", 1)
        if words != expected_words:
            raise EncodedModelError(f"{MANIFEST}: key 'files.{file_name}.words': expected {expected_words} (the "
                                    f"memory's depth), got {words}")
        if bits != values_bits:
            raise EncodedModelError(f"{MANIFEST}: key 'files.{file_name}.bits': expected {values_bits} (the "
                                    f"memory's width), got {bits}")
        path = directory / file_name
        if not path.is_file():
            raise EncodedModelError(f"{path}: missing (listed in {MANIFEST})")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != sha:
            raise EncodedModelError(f"{path}: sha256 checksum mismatch (expected {sha} from {MANIFEST}): the file "
                                    f"was modified or corrupted")
        if suffix == ".hex":
            array = parse_hex(data, bits, str(path))
        else:
            try:
                array = np.load(io.BytesIO(data), allow_pickle=False)
            except ValueError as error:
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
    """Read and validate an encoded model directory (docs/format.md, 'manifest.json')."""
    directory = Path(outdir)
    if directory.name == MANIFEST and directory.is_file():
        directory = directory.parent  # the manifest's path names its directory just as well
    top = _Keys(_read_manifest(directory), "")
    version = top.get("format_version", int)
    if version != FORMAT_VERSION:
        raise EncodedModelError(f"{MANIFEST}: key 'format_version': expected {FORMAT_VERSION}, got {version} "
                                f"(written by {top.value.get('producer', 'an unknown producer')})")
    try:
        numerics = Numerics.from_dict(top.get("numerics", dict))
    except (ValueError, KeyError, TypeError) as error:
        raise EncodedModelError(f"{MANIFEST}: key 'numerics': {error}") from None
    n_pes = top.int_at_least("n_pes", 1)
    layer_list = top.get("layers", list)
    if not layer_list:
        raise EncodedModelError(f"{MANIFEST}: key 'layers': expected at least one layer")
    layers = tuple(_parse_layer(_Keys(value, f"layers[{k}]")) for k, value in enumerate(layer_list))
    for k in range(1, len(layers)):
        _expect(layers[k].input_size, layers[k - 1].recurrent_size, f"layers[{k}].input_size",
                f" (layer {k - 1}'s recurrent_size)")

    memories_keys = top.child("memories")
    memories = {key: memories_keys.int_at_least(key, 1)
                for key in ("entry_bits", "pointer_bits", "bias_bits", "peephole_bits")}
    for key, bits in memories.items():
        if bits > MAX_ENTRY_BITS:
            raise EncodedModelError(f"{MANIFEST}: key 'memories.{key}': expected at most {MAX_ENTRY_BITS} bits, "
                                    f"got {bits}")
    _expect(memories["entry_bits"], numerics.weight_bits + numerics.index_bits, "memories.entry_bits",
            " (weight_bits + index_bits)")
    _expect(memories["bias_bits"], max(layer.gate_acc_bits for layer in layers), "memories.bias_bits",
            " (the largest gate_acc_bits)")
    _expect(memories["peephole_bits"], numerics.peephole_bits, "memories.peephole_bits",
            " (numerics.peephole_bits)")
    widths = {"entries": (memories["entry_bits"], False), "pointers": (memories["pointer_bits"], False),
              "bias": (memories["bias_bits"], True), "peephole": (memories["peephole_bits"], True)}

    pe_list = top.get("pes", list)
    _expect(len(pe_list), n_pes, "pes (length)", " (n_pes)")
    listing = top.get("files", dict)
    images = []
    for p, value in enumerate(pe_list):
        keys = _Keys(value, f"pes[{p}]")
        _expect(keys.get("pe", int), p, f"pes[{p}].pe")
        cells = keys.int_list("cells", len(layers))
        proj_rows = keys.int_list("proj_rows", len(layers))
        for k, layer in enumerate(layers):
            _expect(cells[k], cells_of_pe(layer.cell_size, n_pes, p), f"pes[{p}].cells[{k}]",
                    " (ceil((cell_size - pe) / n_pes))")
            expected_rows = pe_proj_rows(layer.proj_size, n_pes, p).size if layer.proj_size else 0
            _expect(proj_rows[k], expected_rows, f"pes[{p}].proj_rows[{k}]")
        segment_list = keys.get("segments", list)
        expected_order = [(k, matrix) for k, layer in enumerate(layers)
                          for matrix in ((GATES_MATRIX, PROJ_MATRIX) if layer.proj_size else (GATES_MATRIX,))]
        _expect(len(segment_list), len(expected_order), f"pes[{p}].segments (length)",
                " (one per layer and hardware matrix)")
        segments, entry_base, ptr_base = [], 0, 0
        for s, (segment_value, (k, matrix)) in enumerate(zip(segment_list, expected_order)):
            path = f"pes[{p}].segments[{s}]"
            seg = _Keys(segment_value, path)
            segment = Segment(layer=seg.get("layer", int), matrix=seg.get("matrix", str),
                              entry_base=seg.int_at_least("entry_base", 0),
                              entry_count=seg.int_at_least("entry_count", 0),
                              nonzeros=seg.int_at_least("nonzeros", 0), padding=seg.int_at_least("padding", 0),
                              ptr_base=seg.int_at_least("ptr_base", 0), columns=seg.int_at_least("columns", 0),
                              rows=seg.int_at_least("rows", 0))
            layer = layers[k]
            _expect((segment.layer, segment.matrix), (k, matrix), f"{path}.(layer, matrix)",
                    " (layer 0 gates, layer 0 proj, layer 1 gates, ...)")
            columns = layer.columns if matrix == GATES_MATRIX else layer.cell_size
            rows = GATES_PER_CELL * cells[k] if matrix == GATES_MATRIX else proj_rows[k]
            _expect(segment.columns, columns, f"{path}.columns")
            _expect(segment.rows, rows, f"{path}.rows")
            _expect(segment.entry_base, entry_base, f"{path}.entry_base", " (the end of the previous segment)")
            _expect(segment.ptr_base, ptr_base, f"{path}.ptr_base", " (the end of the previous segment)")
            _expect(segment.entry_count, segment.nonzeros + segment.padding, f"{path}.entry_count",
                    " (nonzeros + padding)")
            entry_base += segment.entry_count
            ptr_base += segment.columns + 1
            segments.append(segment)
        bias_base = [sum(GATES_PER_CELL * cells[j] for j in range(k)) for k in range(len(layers))]
        peephole_base = [sum(PEEPHOLES_PER_CELL * cells[j] for j in range(k) if layers[j].peephole)
                         for k in range(len(layers))]
        _expect(keys.int_list("bias_base", len(layers)), bias_base, f"pes[{p}].bias_base")
        _expect(keys.int_list("peephole_base", len(layers)), peephole_base, f"pes[{p}].peephole_base")
        depths = {"entries": entry_base, "pointers": ptr_base,
                  "bias": GATES_PER_CELL * sum(cells),
                  "peephole": PEEPHOLES_PER_CELL * sum(c for c, layer in zip(cells, layers) if layer.peephole)}
        arrays = {}
        for memory, key in zip(PE_MEMORIES, ("entry_depth", "pointer_depth", "bias_depth", "peephole_depth")):
            _expect(keys.int_at_least(key, 0), depths[memory], f"pes[{p}].{key}")
            name = f"{pe_prefix(p, n_pes)}_{memory}"
            bits, signed = widths[memory]
            arrays[memory] = _read_file(directory, name, listing, bits, depths[memory])
            _check_width(arrays[memory], bits, signed, directory / f"{name}.npy")
        images.append(PEImage(pe=p, cells=tuple(cells), proj_rows=tuple(proj_rows), segments=tuple(segments),
                              bias_base=tuple(bias_base), peephole_base=tuple(peephole_base), **arrays))
    _expect(memories["pointer_bits"], _pointer_bits(max(image.entries.size for image in images)),
            "memories.pointer_bits", " (the width of the largest entry depth)")

    expected_tables = activation_tables(numerics)
    tables = {}
    for name in TABLE_NAMES:
        tables[name] = _read_file(directory, f"tables/{name}", listing, numerics.unit_bits,
                                  expected_tables[name].size)
        if not np.array_equal(tables[name], expected_tables[name]):
            raise EncodedModelError(f"{directory / 'tables' / (name + '.npy')}: differs from the table the "
                                    f"numerics in {MANIFEST} define (docs/numerics.md)")

    encoded = EncodedModel(numerics=numerics, n_pes=n_pes, layers=layers, pes=tuple(images), tables=tables,
                           memories=memories)
    decoded = decode(encoded)   # walks every segment: pointers, rows, counts
    for k, (info, q) in enumerate(zip(layers, decoded.layers)):
        gate_bits, proj_bits = accumulator_bits(q, numerics)
        _expect((info.gate_acc_bits, info.proj_acc_bits), (int(gate_bits), None if proj_bits is None else
                                                           int(proj_bits)),
                f"layers[{k}].(gate_acc_bits, proj_acc_bits)", " (from the decoded weights)")
    return encoded
