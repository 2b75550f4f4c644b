"""The HDL harness: a Verilog module, written from the sidecar, that drives and collects the DUT's streams
inside the simulator, so that no Python runs per clock cycle. Plain Python, no cocotb.

`write_harness(spec, path)` writes module `<top>_harness` around the top module. It has the top's clock,
reset and every non-stream port under the same names (so status and counters read as on the bare top),
the stream ports as outputs (to watch, not to drive), and `harness__*` control ports (HarnessPorts):

- input driver: reads one payload word per offer from the hex file named by the plusarg
  `+sparselstm_inputs=<path>` (one word a line, `first` flags already packed, `pack_frames`); before each
  word it draws from a seeded xorshift32 generator whether to hold `valid` low for the cycle
  (probability `stall_in / 65536`), as `streams.StreamDriver` does with its pause generator;
- output monitor: in each cycle a word is offered, one draw decides whether `ready` is low
  (probability `stall_out / 65536`), as `streams.StreamMonitor` does;
- event log, the file named by `+sparselstm_events=<path>`: `i <cycle>` when the first word of an input
  frame is accepted, `o <cycle> <payload hex>` per output word taken (X/Z bits show as x/z). Cycles count
  rising edges from the first one with reset released (that edge is cycle 0). The log is flushed at each
  word with `last`, when the output has been idle for 256 cycles, and at `done`;
- `done` rises once `input_words` were accepted, `output_words` taken, `drain_cycles` more cycles passed
  (watching for stray words) and `busy` is low.

Nothing moves while `enable` is low: `valid` stays low and `ready` high, for the idle check.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path

from .dut import DutSpec

__all__ = ["HarnessPorts", "HarnessEvents", "harness_module", "write_harness", "harness_plusargs",
           "stall_threshold", "stream_seed"]

_PREFIX = "harness__"
_IDLE_FLUSH_CYCLES = 256
_PATH_CHARS = 4096                          # longest file path a plusarg may carry


class HarnessPorts:
    """Names of the harness's control ports."""

    enable = _PREFIX + "enable"                  # in: 1 to stream
    stall_in = _PREFIX + "stall_in"              # in [16]: P(valid held low before a word) * 65536
    stall_out = _PREFIX + "stall_out"            # in [16]: P(ready low in an offered cycle) * 65536
    seed_in = _PREFIX + "seed_in"                # in [32]: nonzero seeds of the two generators
    seed_out = _PREFIX + "seed_out"
    input_words = _PREFIX + "input_words"        # in [32]: words to send
    output_words = _PREFIX + "output_words"      # in [32]: words expected
    drain_cycles = _PREFIX + "drain_cycles"      # in [32]
    done = _PREFIX + "done"                      # out
    inputs_accepted = _PREFIX + "inputs_accepted"    # out [32]
    outputs_taken = _PREFIX + "outputs_taken"        # out [32]
    cycle = _PREFIX + "cycle"                    # out [64]: the cycle now (the log's count)


def harness_module(spec: DutSpec) -> str:
    return f"{spec.top}_harness"


def stall_threshold(probability: float) -> int:
    """A stall probability in [0, 1) as the harness's 16-bit threshold."""
    if not 0.0 <= probability < 1.0:
        raise ValueError(f"stall probability must be in [0, 1), got {probability}")
    return min(round(probability * 65536), 65535)


def stream_seed(seed: int, stream: str) -> int:
    """A nonzero 32-bit generator seed per case seed and stream ("in" or "out")."""
    return zlib.crc32(f"{seed}:{stream}".encode()) or 1


def harness_plusargs(inputs: Path, events: Path) -> list[str]:
    for path in (inputs, events):
        if len(str(path)) >= _PATH_CHARS:
            raise ValueError(f"{path}: path longer than {_PATH_CHARS - 1} characters")
    return [f"+sparselstm_inputs={inputs}", f"+sparselstm_events={events}"]


def _vector(width: int) -> str:
    return f"[{width - 1}:0] " if width > 1 else ""


def write_harness(spec: DutSpec, path) -> str:
    """Write the harness of `spec`'s top module to `path`; return the harness module's name."""
    stream_ports = {spec.input.valid, spec.input.ready, spec.input.payload,
                    spec.output.valid, spec.output.ready, spec.output.payload}
    names = {port.name for port in spec.ports}
    clashes = sorted(name for name in names if name.startswith(_PREFIX))
    missing = sorted((stream_ports | {spec.clock, spec.reset, spec.status["busy"]}) - names)
    if clashes or missing:
        raise ValueError(f"{spec.top}: cannot wrap it in a harness: ports {clashes} use the prefix {_PREFIX!r}"
                         if clashes else f"{spec.top}: the sidecar's ports lack {missing}")
    module = harness_module(spec)
    inp, out = spec.input, spec.output
    last = out.fields["last"].offset
    top_reset = spec.reset if spec.reset_active_high else f"!{spec.reset}"
    # Every port of the top is a port of the harness; the streams become outputs (the harness drives them).
    declarations = [f"  {'output' if port.name in stream_ports else port.direction} {_vector(port.width)}"
                    f"{port.name}" for port in spec.ports]
    declarations += [f"  input {HarnessPorts.enable}", f"  input [15:0] {HarnessPorts.stall_in}",
                     f"  input [15:0] {HarnessPorts.stall_out}", f"  input [31:0] {HarnessPorts.seed_in}",
                     f"  input [31:0] {HarnessPorts.seed_out}", f"  input [31:0] {HarnessPorts.input_words}",
                     f"  input [31:0] {HarnessPorts.output_words}", f"  input [31:0] {HarnessPorts.drain_cycles}",
                     f"  output reg {HarnessPorts.done}", f"  output reg [31:0] {HarnessPorts.inputs_accepted}",
                     f"  output reg [31:0] {HarnessPorts.outputs_taken}", f"  output reg [63:0] {HarnessPorts.cycle}"]
    connections = ",\n".join(f"    .{port.name}({'dut_reset' if port.name == spec.reset else port.name})"
                            for port in spec.ports)
    controls = [HarnessPorts.enable, HarnessPorts.stall_in, HarnessPorts.stall_out, HarnessPorts.seed_in,
                HarnessPorts.seed_out, HarnessPorts.input_words, HarnessPorts.output_words,
                HarnessPorts.drain_cycles]
    widths = {HarnessPorts.enable: 1, HarnessPorts.stall_in: 16, HarnessPorts.stall_out: 16}
    registered = "\n".join(f"  reg {_vector(widths.get(name, 32))}{name[len(_PREFIX):]};" for name in controls)
    copies = "\n".join(f"    {name[len(_PREFIX):]} <= {name};" for name in controls)
    frame_bits = max(spec.input_size.bit_length(), 1)
    busy = spec.status["busy"]
    # Public to VPI even when Verilator is told to make nothing else public (faster: it may optimise the DUT);
    # outputs read-only: logic fed by a signal VPI may write is re-evaluated at every input change.
    access = {"input": "rw", "output": "rd"}
    ports = ",\n".join(f"{declaration} /* verilator public_flat_{access[declaration.split()[0]]} */"
                        for declaration in declarations)
    text = f"""\
// Generated by sparselstm.sim.harness from the sidecar of `{spec.top}`: drives and collects its streams
// inside the simulator (see sim/harness.py). Do not edit.
module {module} (
{ports}
);
  // The top's inputs (but the clock) only feed registers: Verilator evaluates logic fed by an input at
  // every input change, twice a cycle with the clock; logic fed by registers only after the clock edge.
  // So the DUT and the harness see reset and the settings one cycle after cocotb sets them.
  reg reset = 1'b1;
{registered}
  always @(posedge {spec.clock}) begin
    reset <= {top_reset};
{copies}
  end
  wire dut_reset = {"reset" if spec.reset_active_high else "!reset"};

  reg in_valid_r;
  reg [{inp.width - 1}:0] in_payload_r;
  assign {inp.valid} = in_valid_r;
  assign {inp.payload} = in_payload_r;
  reg [31:0] in_rng, out_rng, words_read, drained;
  reg [{frame_bits - 1}:0] in_word;          // position of the next accepted word in its frame
  reg [8:0] out_idle;
  wire streaming = enable && !(reset);
  wire in_pause = in_rng[15:0] < stall_in;
  wire out_pause = out_rng[15:0] < stall_out;
  assign {out.ready} = (reset) ? 1'b0 : (enable ? !out_pause : 1'b1);
  wire in_fire = in_valid_r && {inp.ready};
  wire out_fire = {out.valid} && {out.ready} && streaming;

  {spec.top} dut (
{connections}
  );

  function [31:0] xorshift32(input [31:0] x);
    reg [31:0] a, b;
    begin
      a = x ^ (x << 13);
      b = a ^ (a >> 17);
      xorshift32 = b ^ (b << 5);
    end
  endfunction

  reg [{8 * _PATH_CHARS - 1}:0] inputs_path, events_path;
  integer inputs_file, events_file, scanned;
  reg [{inp.width - 1}:0] next_word;
  initial begin
    inputs_file = 0;
    events_file = 0;
    if ($value$plusargs("sparselstm_inputs=%s", inputs_path)) inputs_file = $fopen(inputs_path, "r");
    if ($value$plusargs("sparselstm_events=%s", events_path)) events_file = $fopen(events_path, "w");
  end

  always @(posedge {spec.clock}) begin
    if (reset) begin
      {HarnessPorts.cycle} <= 0;
      in_valid_r <= 0;
      in_payload_r <= 0;
      in_rng <= seed_in;
      out_rng <= seed_out;
      words_read <= 0;
      in_word <= 0;
      out_idle <= 0;
      drained <= 0;
      {HarnessPorts.inputs_accepted} <= 0;
      {HarnessPorts.outputs_taken} <= 0;
      {HarnessPorts.done} <= 0;
    end else begin
      {HarnessPorts.cycle} <= {HarnessPorts.cycle} + 1;
      if (in_fire) begin
        {HarnessPorts.inputs_accepted} <= {HarnessPorts.inputs_accepted} + 1;
        in_word <= in_word == {spec.input_size - 1} ? 0 : in_word + 1;
        if (in_word == 0) $fwrite(events_file, "i %0d\\n", {HarnessPorts.cycle});
      end
      if (!in_valid_r || {inp.ready}) begin
        in_valid_r <= 0;
        if (enable && words_read < input_words) begin
          in_rng <= xorshift32(in_rng);
          if (!in_pause) begin
            scanned = $fscanf(inputs_file, "%h\\n", next_word);
            if (scanned != 1) begin
              $display("{module}: cannot read input word %0d from %0s", words_read, inputs_path);
              $finish;
            end
            in_payload_r <= next_word;
            in_valid_r <= 1;
            words_read <= words_read + 1;
          end
        end
      end
      if (enable && {out.valid}) out_rng <= xorshift32(out_rng);
      out_idle <= out_fire ? 0 : (out_idle == {_IDLE_FLUSH_CYCLES} ? out_idle : out_idle + 1);
      if (out_fire) begin
        {HarnessPorts.outputs_taken} <= {HarnessPorts.outputs_taken} + 1;
        $fwrite(events_file, "o %0d %h\\n", {HarnessPorts.cycle}, {out.payload});
        if ({out.payload}[{last}] === 1'b1) $fflush(events_file);
      end else if (out_idle == {_IDLE_FLUSH_CYCLES - 1}) begin
        $fflush(events_file);
      end
      if (enable && !{HarnessPorts.done} && {HarnessPorts.inputs_accepted} >= input_words
          && {HarnessPorts.outputs_taken} >= output_words) begin
        if (drained < drain_cycles) drained <= drained + 1;
        else if (!(|{busy})) begin
          {HarnessPorts.done} <= 1;
          $fflush(events_file);
        end
      end
    end
  end
endmodule
"""
    _check_internal_names(text, names, spec.top)
    Path(path).write_text(text)
    return module


def _check_internal_names(text: str, port_names: set[str], top: str) -> None:
    """The harness's own registers and wires must not take the name of one of the top's ports."""
    body = text.partition(");\n")[2]
    declared = set()
    for names in re.findall(r"^\s*(?:reg|wire|integer)\b(?:\s*\[[^\]]*\])?\s+([\w\s,]+?)\s*[=;]", body, re.MULTILINE):
        declared.update(name.strip() for name in names.split(","))
    clashes = sorted(declared & port_names)
    if clashes:
        raise ValueError(f"{top}: cannot wrap it in a harness: its ports {clashes} clash with the harness's signals")


class HarnessEvents:
    """Reads the harness's event log as it grows: complete lines only, from where the last read stopped.

    Attributes
    ----------
    frame_starts : list of int
        The cycle of each accepted first word of an input frame.
    """

    def __init__(self, path):
        self.path = Path(path)
        self._offset = 0
        self.frame_starts: list[int] = []

    def read_outputs(self) -> list[tuple[int, str]]:
        """The new output words as (cycle, payload hex as logged); records the new frame starts."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return []
        complete = chunk[:chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        words = []
        for line in complete.decode().splitlines():
            kind, cycle, *payload = line.split()
            if kind == "i":
                self.frame_starts.append(int(cycle))
            else:
                words.append((int(cycle), payload[0]))
        return words
