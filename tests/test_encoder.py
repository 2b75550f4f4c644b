"""The sparse format (sw/format/, docs/format.md): encode/decode, files, and the validating reader."""

import hashlib
import json
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from sparselstm.spec.encoded import EncodedModel, LayerInfo, PEImage, Segment
from sparselstm.sw.format import (cells_of_pe, decode, encode, hex_text, load_encoded, parse_hex, pe_gate_rows,
                                   permute_cells, segment_entries, write_encoded)
from sparselstm.spec.errors import EncodedModelError, ParameterError
from sparselstm.sw.fixedpoint import Numerics, activation_tables
from sparselstm.sw.model import random_model
from sparselstm.sw.pipeline import compress_and_encode
from sparselstm.sw.quantize import accumulator_bits
from sparselstm.sw.quantized import QuantizedLayer, QuantizedModel


# ----------------------------------------------------------------------------------------------------------
# Helpers: random integer models and an obviously-correct (slow) encoder to compare against


def random_qmodel(rng, numerics, layer_count, input_size, cells, projs, peepholes, densities, gap_rows=None):
    """A QuantizedModel of random integers. `gap_rows`: if given, only rows that are multiples of it may be
    non-zero (long zero runs, so that padding entries are needed)."""
    low, high = -(1 << (numerics.weight_bits - 1)), (1 << (numerics.weight_bits - 1)) - 1

    def weights(shape, density):
        w = rng.integers(low, high + 1, size=shape)
        w[rng.random(shape) >= density] = 0
        if gap_rows:
            w[np.arange(shape[0]) % gap_rows != 0] = 0
        return w

    layers, size_in = [], input_size
    for k in range(layer_count):
        h, p = cells[k], projs[k]
        r = p if p is not None else h
        peep = peepholes[k]
        fw_x, fw_r = int(rng.integers(-3, 12)), int(rng.integers(-3, 12))
        layers.append(QuantizedLayer(
            input_size=size_in, cell_size=h, recurrent_size=r, w_gates=weights((4 * h, size_in + r), densities[k]),
            fw_x=fw_x, fw_r=fw_r, facc=numerics.act_frac + max(fw_x, fw_r),
            bias=rng.integers(-1000, 1000, size=4 * h),
            peephole=rng.integers(-(1 << 15), 1 << 15, size=(3, h)) if peep else None,
            fp=int(rng.integers(0, 15)) if peep else None,
            w_proj=weights((p, h), densities[k]) if p is not None else None,
            fw_p=int(rng.integers(0, 12)) if p is not None else None))
        size_in = r
    return QuantizedModel(numerics, tuple(layers))


def reference_segment(sub: np.ndarray, index_bits: int, weight_bits: int):
    """Entries and relative pointers of one PE sub-matrix, one non-zero at a time (docs/format.md)."""
    words, pointers = [], [0]
    for c in range(sub.shape[1]):
        cursor = -1
        for row in range(sub.shape[0]):
            if sub[row, c] != 0:
                gap = row - cursor - 1
                while gap >= 2 ** index_bits:
                    words.append(2 ** index_bits - 1)  # padding (0, 2**K - 1) advances 2**K rows
                    gap -= 2 ** index_bits
                words.append((int(sub[row, c]) % 2 ** weight_bits) * 2 ** index_bits + gap)
                cursor = row
        pointers.append(len(words))
    return words, pointers


def reference_pe_entries(qmodel: QuantizedModel, n_pes: int, pe: int):
    n = qmodel.numerics
    words, pointers = [], []
    for layer in qmodel.layers:
        h = layer.cell_size
        cells = [j for j in range(h) if j % n_pes == pe]
        # local row 4*q + k holds gate k of the PE's q-th cell j: model row k*H + j
        columns = layer.w_gates.shape[1]
        gates = np.array([layer.w_gates[k * h + j] for j in cells for k in range(4)]).reshape(4 * len(cells), columns)
        subs = [gates]
        if layer.w_proj is not None:
            proj_rows = [layer.w_proj[r] for r in range(layer.proj_size) if r % n_pes == pe]
            subs.append(np.array(proj_rows).reshape(len(proj_rows), h))
        for sub in subs:
            w, p = reference_segment(sub, n.index_bits, n.weight_bits)
            pointers += [v + len(words) for v in p]
            words += w
    return words, pointers


def assert_same_qmodel(a: QuantizedModel, b: QuantizedModel):
    assert a.numerics == b.numerics
    assert len(a.layers) == len(b.layers)
    for x, y in zip(a.layers, b.layers):
        for name in ("input_size", "cell_size", "recurrent_size", "fw_x", "fw_r", "facc", "fp", "fw_p"):
            assert getattr(x, name) == getattr(y, name), name
        for name in ("w_gates", "bias", "peephole", "w_proj"):
            u, v = getattr(x, name), getattr(y, name)
            assert (u is None) == (v is None), name
            if u is not None:
                np.testing.assert_array_equal(u, v, err_msg=name)


@st.composite
def model_cases(draw):
    layer_count = draw(st.integers(1, 3))
    cells = [draw(st.integers(1, 13)) for _ in range(layer_count)]
    projs = [draw(st.one_of(st.none(), st.integers(1, h - 1))) if h > 1 else None for h in cells]
    return dict(
        numerics=Numerics(weight_bits=draw(st.integers(2, 16)), index_bits=draw(st.integers(1, 8))),
        layer_count=layer_count, input_size=draw(st.integers(1, 9)), cells=cells, projs=projs,
        peepholes=[draw(st.booleans()) for _ in range(layer_count)],
        densities=[draw(st.sampled_from([0.0, 1.0, 0.05, 0.3, 0.7])) for _ in range(layer_count)],
        gap_rows=draw(st.sampled_from([None, None, 5, 17, 40])),
        n_pes=draw(st.one_of(st.integers(1, 8), st.integers(9, 64))),
        seed=draw(st.integers(0, 2**32 - 1)))


# ----------------------------------------------------------------------------------------------------------
# Encoding


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=model_cases())
def test_encode_decode_is_the_identity_and_matches_the_reference_encoder(case):
    rng = np.random.default_rng(case.pop("seed"))
    n_pes = case.pop("n_pes")
    qmodel = random_qmodel(rng, **case)
    encoded = encode(qmodel, n_pes)
    assert_same_qmodel(decode(encoded), qmodel)
    stored = decode(encoded, hardware_order=True)    # the cells as dealt (reordered where that balances)
    assert_same_qmodel(stored, permute_cells(qmodel, [info.cell_order for info in encoded.layers]))
    for image in encoded.pes:
        words, pointers = reference_pe_entries(stored, n_pes, image.pe)
        assert image.entries.tolist() == words
        assert image.pointers.tolist() == pointers
        for segment in image.segments:
            walked = segment_entries(encoded, image.pe, segment.layer, segment.matrix)
            assert walked.padding.sum() == segment.padding
            assert (~walked.padding).sum() == segment.nonzeros
    # The balance of the work is visible in the manifest: every entry is in exactly one segment.
    assert sum(s.entry_count for image in encoded.pes for s in image.segments) == encoded.total_entries


def worked_example_model(numerics):
    """docs/format.md, worked example: 1 input, 4 cells, no projection; column 0 has three non-zeros."""
    w = np.zeros((16, 5), dtype=np.int64)
    w[0, 0], w[9, 0], w[15, 0] = 3, -2, 7  # gate i cell 0; gate g cell 1; gate o cell 3
    layer = QuantizedLayer(input_size=1, cell_size=4, recurrent_size=4, w_gates=w, fw_x=0, fw_r=0, facc=11,
                           bias=np.arange(16) - 8)
    return QuantizedModel(numerics, (layer,))


def test_worked_example_one_pe():
    numerics = Numerics(weight_bits=4, index_bits=2)
    encoded = encode(worked_example_model(numerics), 1)
    image = encoded.pes[0]
    # local rows 4*q + k: model row 0 -> 0, row 9 (g, cell 1) -> 6, row 15 (o, cell 3) -> 15
    assert pe_gate_rows(4, 1, 0).tolist() == [0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15]
    # (3, 0); gap 5 = one padding (lands on row 4) + (-2, 1); gap 8 = two paddings (rows 10, 14) + (7, 0)
    assert image.entries.tolist() == [0x0c, 0x03, 0x39, 0x03, 0x03, 0x1c]
    assert image.pointers.tolist() == [0, 6, 6, 6, 6, 6]
    assert encoded.segment(0, 0, "gates") == Segment(layer=0, matrix="gates", entry_base=0, entry_count=6,
                                                     nonzeros=3, padding=3, ptr_base=0, columns=5, rows=16)
    assert hex_text(image.entries, 6) == b"0c\n03\n39\n03\n03\n1c\n"
    assert image.bias.tolist() == (pe_gate_rows(4, 1, 0) - 8).tolist()


def test_worked_example_two_pes():
    numerics = Numerics(weight_bits=4, index_bits=2)
    encoded = encode(worked_example_model(numerics), 2)
    pe0, pe1 = encoded.pes
    assert pe0.cells == (2,) and pe1.cells == (2,)
    assert pe0.entries.tolist() == [0x0c]                     # model row 0 -> PE 0, local row 0
    assert pe1.entries.tolist() == [0x3a, 0x03, 0x1c]          # local rows 2 (gap 2), 7 (gap 4: one padding)
    assert pe1.pointers.tolist() == [0, 3, 3, 3, 3, 3]
    assert [s.padding for s in (pe0.segments[0], pe1.segments[0])] == [0, 1]


def test_pes_beyond_the_cell_count_hold_nothing():
    qmodel = random_qmodel(np.random.default_rng(0), Numerics(), 1, 3, [2], [1], [True], [1.0])
    encoded = encode(qmodel, 5)
    assert [image.cells for image in encoded.pes] == [(1,), (1,), (0,), (0,), (0,)]
    assert [image.proj_rows for image in encoded.pes] == [(1,), (0,), (0,), (0,), (0,)]
    for image in encoded.pes[2:]:
        assert image.entries.size == image.bias.size == image.peephole.size == 0
        assert image.pointers.tolist() == [0] * ((3 + 1 + 1) + (2 + 1))  # empty columns still have pointers
    assert [cells_of_pe(10, 4, p) for p in range(4)] == [3, 3, 2, 2]
    assert cells_of_pe(3, 5, 4) == 0
    with pytest.raises(ValueError, match="PE 4 does not exist"):
        cells_of_pe(10, 4, 4)
    assert_same_qmodel(decode(encoded), qmodel)


def test_layer_info_and_memories():
    qmodel = random_qmodel(np.random.default_rng(1), Numerics(), 2, 4, [6, 5], [3, None], [True, False],
                           [0.5, 0.5])
    encoded = encode(qmodel, 4)
    for info, layer in zip(encoded.layers, qmodel.layers):
        assert isinstance(info, LayerInfo)
        assert (info.shift_x, info.shift_r) == (layer.shift_x, layer.shift_r)
        assert (info.gate_acc_bits, info.proj_acc_bits) == accumulator_bits(layer, qmodel.numerics)
    assert encoded.memories == {
        "entry_bits": 16, "pointer_bits": max(image.entries.size for image in encoded.pes).bit_length(),
        "bias_bits": max(info.gate_acc_bits for info in encoded.layers), "peephole_bits": 16}
    assert encoded.pes[1].peephole_base == (0, 3 * 2)  # layer 1 has no peepholes: nothing after it
    assert encoded.pes[1].peephole.size == 3 * 2
    assert encoded.pes[1].bias_base == (0, 4 * 2)
    for name, table in activation_tables(qmodel.numerics).items():
        np.testing.assert_array_equal(encoded.tables[name], table)


def test_encode_rejects_bad_parameters():
    numerics = Numerics(weight_bits=4, index_bits=2)
    qmodel = worked_example_model(numerics)
    for n_pes in (0, -3):
        with pytest.raises(ParameterError, match="PEs"):
            encode(qmodel, n_pes)
    for n_pes in (1.5, True, "2"):
        with pytest.raises(TypeError, match="PEs"):
            encode(qmodel, n_pes)
    too_wide = worked_example_model(Numerics(weight_bits=3, index_bits=2))  # 7 does not fit 3 bits
    with pytest.raises(ParameterError, match=r"layer 0 gate weights: values span \[-2, 7\]"):
        encode(too_wide, 1)
    with pytest.raises(TypeError, match="QuantizedModel"):
        encode(random_model(2, 3), 1)


def test_hex_text_round_trip_and_truncation():
    values = np.array([0, 1, -1, 2047, -2048, 255])
    text = hex_text(values, 12)
    assert text.split(b"\n")[:3] == [b"000", b"001", b"fff"]
    np.testing.assert_array_equal(parse_hex(text, 12, "x.hex"), values & 0xFFF)
    assert parse_hex(text.upper(), 12, "x.hex").tolist() == (values & 0xFFF).tolist()
    assert hex_text(np.zeros(0), 5) == b""
    with pytest.raises(EncodedModelError, match="x.hex: line 2: expected 3 hexadecimal digits"):
        parse_hex(b"001\n02\n", 12, "x.hex")
    with pytest.raises(EncodedModelError, match="x.hex: line 2: not a hexadecimal number"):
        parse_hex(b"001\n0g2\n", 12, "x.hex")


# ----------------------------------------------------------------------------------------------------------
# Files


@pytest.fixture(scope="module")
def compressed():
    model = random_model(7, 9, proj_size=5, num_layers=2, seed=11)
    return compress_and_encode(model, 4, density=0.3, numerics=Numerics(index_bits=2))


@pytest.fixture
def written(compressed, tmp_path):
    return write_encoded(compressed.encoded, tmp_path / "enc")


def test_write_load_decode_round_trip(compressed, written):
    loaded = load_encoded(written)
    assert isinstance(loaded, EncodedModel)
    assert loaded.manifest() == compressed.encoded.manifest()
    for a, b in zip(loaded.pes, compressed.encoded.pes):
        assert isinstance(a, PEImage)
        for memory in ("entries", "pointers", "bias", "peephole"):
            np.testing.assert_array_equal(getattr(a, memory), getattr(b, memory))
    assert_same_qmodel(decode(loaded), compressed.qmodel)
    manifest = json.loads((written / "manifest.json").read_text())
    assert manifest["files"]["pe03_entries.hex"]["bits"] == 14
    assert (written / "tables" / "tanh_D.hex").read_text().count("\n") == 2 ** 10 + 1
    words = (written / "pe01_bias.hex").read_text().split()
    assert all(len(word) == (manifest["memories"]["bias_bits"] + 3) // 4 for word in words)


def edit_manifest(directory, edit):
    manifest = json.loads((directory / "manifest.json").read_text())
    edit(manifest)
    (directory / "manifest.json").write_text(json.dumps(manifest))


def rewrite_memory(directory, stem, values, bits=None):
    """Replace a memory's .hex and .npy consistently and fix the manifest's checksums and word counts,
    so that only the deeper checks can catch the change."""
    manifest = json.loads((directory / "manifest.json").read_text())
    bits = bits or manifest["files"][stem + ".hex"]["bits"]
    values = np.asarray(values, dtype=np.int64)
    (directory / (stem + ".hex")).write_bytes(hex_text(values, bits))
    np.save(directory / (stem + ".npy"), values)
    for suffix in (".hex", ".npy"):
        data = (directory / (stem + suffix)).read_bytes()
        manifest["files"][stem + suffix].update(sha256=hashlib.sha256(data).hexdigest(), words=int(values.size))
    (directory / "manifest.json").write_text(json.dumps(manifest))


def break_pointer_order(directory):
    pointers = np.load(directory / "pe00_pointers.npy")
    assert pointers[2] >= 1  # so that the broken pointer is still a valid unsigned word
    pointers[2], pointers[3] = pointers[3], pointers[2] - 1  # column 2 ends before it starts
    assert pointers[2] > pointers[3]
    rewrite_memory(directory, "pe00_pointers", pointers)


def move_pointer_out_of_segment(directory):
    pointers = np.load(directory / "pe00_pointers.npy")
    pointers[0] = 1  # the first segment must start at entry 0
    rewrite_memory(directory, "pe00_pointers", pointers)


def send_row_out_of_range(directory):
    # PE 0 holds projection rows 0 and 4 of layer 0: local rows 0 and 1. Index 3 lands on local row 3.
    proj = json.loads((directory / "manifest.json").read_text())["pes"][0]["segments"][1]
    assert proj["matrix"] == "proj" and proj["rows"] == 2 and proj["entry_count"] > 0
    entries = np.load(directory / "pe00_entries.npy")
    entries[proj["entry_base"]] |= 0b11
    rewrite_memory(directory, "pe00_entries", entries)


def zero_weight_entry(directory):
    entries = np.load(directory / "pe00_entries.npy")
    entries[0] = 0  # weight 0 with index 0: neither a weight nor a padding entry
    rewrite_memory(directory, "pe00_entries", entries)


def change_table(directory):
    table = np.load(directory / "tables" / "sigmoid_T.npy")
    table[5] += 1
    rewrite_memory(directory, "tables/sigmoid_T", table)


def corrupt_hex_only(directory):
    path = directory / "pe02_bias.hex"
    data = bytearray(path.read_bytes())
    data[0] = ord("0") if data[0] != ord("0") else ord("1")
    path.write_bytes(bytes(data))
    edit_manifest(directory, lambda m: m["files"]["pe02_bias.hex"].update(
        sha256=hashlib.sha256(bytes(data)).hexdigest()))


def overflow_entry_width(directory):
    entries = np.load(directory / "pe01_entries.npy")
    entries[0] |= 1 << 20  # wider than the 14-bit entry word (the .hex truncates it)
    rewrite_memory(directory, "pe01_entries", entries)


CORRUPTIONS = {
    "missing manifest": (lambda d: (d / "manifest.json").unlink(), r"manifest.json: missing"),
    "bad json": (lambda d: (d / "manifest.json").write_text("{nope"), r"manifest.json: not valid JSON"),
    "not an object": (lambda d: (d / "manifest.json").write_text("[1]"),
                      r"manifest.json: top level: expected a JSON object"),
    "format version": (lambda d: edit_manifest(d, lambda m: m.update(format_version=2)),
                       r"'format_version': expected 1, got 2"),
    "missing key": (lambda d: edit_manifest(d, lambda m: m.pop("n_pes")), r"missing key 'n_pes'"),
    "missing nested key": (lambda d: edit_manifest(d, lambda m: m["pes"][1]["segments"][2].pop("ptr_base")),
                           r"missing key 'pes\[1\].segments\[2\].ptr_base'"),
    "wrong type": (lambda d: edit_manifest(d, lambda m: m["layers"][0].update(cell_size="9")),
                   r"'layers\[0\].cell_size': expected an integer, got '9'"),
    "bad numerics": (lambda d: edit_manifest(d, lambda m: m["numerics"].update(unit_frac=15)),
                     r"key 'numerics': Numerics.unit_frac = 15"),
    "inconsistent segment": (lambda d: edit_manifest(d, lambda m: m["pes"][0]["segments"][1].update(entry_base=0)),
                             r"'pes\[0\].segments\[1\].entry_base': expected \d+ \(the end of the previous"),
    "missing file": (lambda d: (d / "pe03_pointers.hex").unlink(), r"pe03_pointers.hex: missing \(listed"),
    "file not listed": (lambda d: edit_manifest(d, lambda m: m["files"].pop("pe00_bias.npy")),
                        r"'pe00_bias.npy' is not listed"),
    "checksum": (lambda d: (d / "pe01_entries.npy").write_bytes((d / "pe01_entries.npy").read_bytes()[:-8] + b"\0" * 8),
                 r"pe01_entries.npy: sha256 checksum mismatch"),
    "word count in manifest": (lambda d: edit_manifest(d, lambda m: m["files"]["pe00_entries.hex"].update(words=3)),
                               r"'files.pe00_entries.hex.words': expected \d+ \(the memory's depth\), got 3"),
    "word count in file": (lambda d: rewrite_memory(d, "pe02_peephole", np.zeros(4, np.int64)),
                           r"'files.pe02_peephole.hex.words': expected 12"),
    "width": (lambda d: edit_manifest(d, lambda m: m["files"]["pe00_pointers.hex"].update(bits=9)),
              r"'files.pe00_pointers.hex.bits': expected \d+ \(the memory's width\), got 9"),
    "value wider than the memory": (overflow_entry_width,
                                    r"pe01_entries.npy: word 0 = \d+ does not fit an unsigned 14-bit"),
    "hex differs from npy": (corrupt_hex_only, r"pe02_bias.hex: word 0 is .* but pe02_bias.npy holds"),
    "pointers non-monotonic": (break_pointer_order,
                               r"pe00_pointers.hex: PE 0 layer 0 gates: pointers must be non-decreasing"),
    "pointer out of segment": (move_pointer_out_of_segment,
                               r"pe00_pointers.hex: PE 0 layer 0 gates: pointers must run from entry_base 0"),
    "row out of range": (send_row_out_of_range,
                         r"pe00_entries.hex: PE 0 layer 0 proj: entry at address \d+ \(column \d+\) "
                         r"lands on local row [23], but the PE has only 2 rows"),
    "stray zero entry": (zero_weight_entry,
                         r"pe00_entries.hex: PE 0 layer 0 gates: entry at address 0 "
                         r"has weight 0 but is not a padding"),
    "table": (change_table, r"sigmoid_T.npy: differs from the table the numerics"),
    # Consistency of the manifest with itself: checked before any memory file is read.
    "facc": (lambda d: edit_manifest(d, lambda m: m["layers"][0].update(facc=m["layers"][0]["facc"] + 1)),
             r"'layers\[0\].facc': expected \d+ \(numerics.act_frac \+ max\(fw_x, fw_r\)\), got \d+"),
    "fraction out of range": (lambda d: edit_manifest(d, lambda m: m["layers"][1].update(fw_p=99)),
                              r"'layers\[1\].fw_p': expected an integer in \[-16, 40\], got 99"),
    "projection not smaller": (lambda d: edit_manifest(d, lambda m: m["layers"][0].update(proj_size=9,
                                                                                          recurrent_size=9)),
                               r"'layers\[0\].proj_size': expected less than cell_size 9, got 9"),
    "unknown key": (lambda d: edit_manifest(d, lambda m: m["layers"][0].update(peephole_bit=16)),
                    r"layers\[0\]: unknown key\(s\) \['layers\[0\].peephole_bit'\]"),
    "unknown top-level key": (lambda d: edit_manifest(d, lambda m: m.update(n_pe=4)),
                              r"top level: unknown key\(s\) \['n_pe'\]"),
    "pointer width": (lambda d: edit_manifest(d, lambda m: m["memories"].update(pointer_bits=20)),
                      r"'memories.pointer_bits': expected \d+ \(the width of the largest entry depth\), got 20"),
    "bias width": (lambda d: edit_manifest(d, lambda m: m["memories"].update(bias_bits=40)),
                   r"'memories.bias_bits': expected \d+ \(the largest gate_acc_bits\), got 40"),
    "entry width": (lambda d: edit_manifest(d, lambda m: m["memories"].update(entry_bits=16)),
                    r"'memories.entry_bits': expected 14 \(weight_bits \+ index_bits\), got 16"),
    "file listed but not part of the model": (
        lambda d: edit_manifest(d, lambda m: m["files"].update({"pe04_bias.hex": m["files"]["pe00_bias.hex"]})),
        r"key 'files': lists \['pe04_bias.hex'\], which the model described does not have"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_each_corruption_gives_its_specific_error(written, case):
    corrupt, message = CORRUPTIONS[case]
    corrupt(written)
    with pytest.raises(EncodedModelError, match=message):
        load_encoded(written)


def test_load_encoded_on_a_missing_directory_or_a_file(tmp_path):
    with pytest.raises(EncodedModelError, match="nowhere: not found"):
        load_encoded(tmp_path / "nowhere")
    (tmp_path / "model.npz").write_bytes(b"")
    with pytest.raises(EncodedModelError, match="model.npz: not a directory"):
        load_encoded(tmp_path / "model.npz")


def test_load_encoded_accepts_the_manifest_path(written):
    assert load_encoded(written / "manifest.json").n_pes == 4


def test_accumulator_widths_are_checked_against_the_decoded_weights(written):
    edit_manifest(written, lambda m: m["layers"][1].update(proj_acc_bits=m["layers"][1]["proj_acc_bits"] + 1))
    with pytest.raises(EncodedModelError, match=r"layers\[1\].\(gate_acc_bits, proj_acc_bits\)"):
        load_encoded(written)


def test_an_untouched_copy_still_loads(written, tmp_path):
    copy = shutil.copytree(written, tmp_path / "copy")
    assert load_encoded(copy).n_pes == 4


def test_a_long_gap_takes_several_paddings_in_a_row():
    numerics = Numerics(weight_bits=6, index_bits=2)
    w = np.zeros((44, 12), dtype=np.int64)
    w[0, 3], w[1 * 11 + 10, 3] = 5, -7  # local rows 0 and 4*10 + 1 = 41 of column 3: a gap of 40 rows
    layer = QuantizedLayer(input_size=1, cell_size=11, recurrent_size=11, w_gates=w, fw_x=0, fw_r=0, facc=11,
                           bias=np.zeros(44, dtype=np.int64))
    encoded = encode(QuantizedModel(numerics, (layer,)), 1)
    padding_word = 0b11
    assert encoded.pes[0].entries.tolist() == [5 << 2] + [padding_word] * 10 + [((-7) % 64) << 2]
    assert encoded.pes[0].pointers.tolist() == [0, 0, 0, 0] + [12] * 9
    walked = segment_entries(encoded, 0, 0, "gates")
    assert walked.local_row.tolist() == [0] + [4 * n for n in range(1, 11)] + [41]  # each padding: +4 rows
    assert walked.target_row.tolist() == [0] + [41] * 11


def test_report_charges_padding_to_the_matrix_of_the_next_non_zero():
    from sparselstm.sw.model import LSTMPLayer, LSTMPModel
    from sparselstm.sw.pipeline import compression_report

    w_input = np.zeros((16, 1))
    w_input[[0, 9, 15], 0] = 3, -2, 7  # the worked example of docs/format.md, quantised exactly (frac 0)
    model = LSTMPModel((LSTMPLayer(w_input=w_input, w_recurrent=np.zeros((16, 4)), bias=np.zeros(16)),))
    result = compress_and_encode(model, 1, 1.0, numerics=Numerics(weight_bits=4, index_bits=2))
    assert result.encoded.pes[0].entries.tolist() == [0x0c, 0x03, 0x39, 0x03, 0x03, 0x1c]
    report = compression_report(result)
    padding = {m["name"]: m["padding"] for m in report["matrices"]}
    assert padding == {"L0.input.i": 0, "L0.input.f": 0, "L0.input.g": 1, "L0.input.o": 2,
                       "L0.recurrent.i": 0, "L0.recurrent.f": 0, "L0.recurrent.g": 0, "L0.recurrent.o": 0}
    totals = report["totals"]
    assert (totals["nonzeros"], totals["padding"], totals["entries"], totals["pointer_words"]) == (3, 3, 6, 6)
    assert report["memories"]["pointer_bits"] == 3  # holds 6
    assert totals["compressed_bits"] == 6 * 6 + 6 * 3
    assert totals["dense_float32_bits"] == 32 * (16 + 64)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=model_cases())
def test_write_load_decode_round_trip_on_random_models(case):
    import tempfile

    rng = np.random.default_rng(case.pop("seed"))
    n_pes = case.pop("n_pes")
    qmodel = random_qmodel(rng, **case)
    encoded = encode(qmodel, n_pes)
    with tempfile.TemporaryDirectory() as tmp:
        loaded = load_encoded(write_encoded(encoded, tmp))
    assert loaded.manifest() == encoded.manifest()
    assert_same_qmodel(decode(loaded), qmodel)


def test_rewriting_with_fewer_pes_leaves_no_stale_images(tmp_path):
    qmodel = random_qmodel(np.random.default_rng(3), Numerics(), 1, 3, [6], [None], [False], [0.5])
    write_encoded(encode(qmodel, 4), tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    write_encoded(encode(qmodel, 2), tmp_path)
    assert sorted(p.name for p in tmp_path.glob("pe*")) == sorted(
        f"pe0{p}_{memory}.{suffix}" for p in range(2) for memory in ("entries", "pointers", "bias", "peephole")
        for suffix in ("hex", "npy"))
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert load_encoded(tmp_path).n_pes == 2
