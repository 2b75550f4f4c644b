"""`sparselstm sim`: run an encoded model's generated Verilog in a simulator and check it word for word."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ._delta_sim import delta_report
from ._files_and_checks import (add_extra_keys_argument, add_lanes_argument, add_word_arguments, check_at_least,
                                check_frames, check_output_dir, check_output_file, load_frames, load_model_file,
                                load_sequence_starts, quantize_frames, save_json, save_npy)


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability, got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1), got {value}")
    return value


def register(subparsers) -> None:
    from ..sim.tools import SIMULATORS

    parser = subparsers.add_parser(
        "sim",
        help="simulate the accelerator's Verilog (cocotb) and check it against the golden model",
        description="Generate the accelerator's Verilog for an encoded model, stream the frames of --input "
                    "through it in Icarus or Verilator (cocotb), check every output word against the golden "
                    "model, and write the accelerator's outputs like `sparselstm golden`. Sequences of a "
                    "(B, T, I) input run back to back, each starting a new sequence. Exits with 1 if any "
                    "word differs.",
    )
    parser.add_argument("encoded", type=Path, metavar="ENCODED_DIR", help="encoded model directory (sparselstm encode)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", "-i", type=Path, metavar="X.npy",
                        help="input frames, shape (T, I) or (B, T, I): real values (quantised to act words), or "
                             "with --raw and an integer dtype, act words as they are")
    source.add_argument("--features", type=Path, metavar="F.npz",
                        help="a classifier's feature set (sparselstm data / models/*-test.npz): run --count of its "
                             "utterances, normalised by --head, and report the predicted class of each utterance")
    parser.add_argument("--output", "-o", type=Path, default=None, metavar="Y.npy",
                        help="where to write the accelerator's outputs, shape (T, out) or (B, T, out) "
                             "(required with --input)")
    classifier = parser.add_argument_group("classifier (with --features)")
    classifier.add_argument("--head", type=Path, metavar="HEAD.npz",
                            help="the classifier around the LSTM: feature normalisation and linear head "
                                 "(models/*.head.npz)")
    classifier.add_argument("--float-model", type=Path, metavar="MODEL",
                            help="a float model (.npz/.pt/.onnx) whose predictions are shown beside the "
                                 "accelerator's, e.g. the dense model before compression")
    classifier.add_argument("--count", type=int, default=20, metavar="N",
                            help="how many utterances to run, spread evenly over the feature set (default 20)")
    add_extra_keys_argument(classifier)
    add_word_arguments(parser)
    parser.add_argument("--simulator", choices=SIMULATORS, default="verilator",
                        help="Verilator builds in about a minute and runs fast; Icarus builds in a second and "
                             "runs about 100x slower (default: verilator)")
    parser.add_argument("--fifo-depth", type=int, default=None, metavar="D",
                        help="activation FIFO words per PE (hardware parameter; default: HardwareParams')")
    add_lanes_argument(parser)
    parser.add_argument("--streams", type=int, default=1, metavar="S",
                        help="interleaved independent sequences, each with its own state (default 1): B sequences of "
                             "the input, a multiple of S, S at a time, frames in turn; "
                             "docs/architecture.md, Streams)")
    parser.add_argument("--report", type=Path, default=None, metavar="R.json", help="write the run's report as JSON")
    parser.add_argument("--waves", action="store_true",
                        help="record a waveform, FST (VCD from Verilator without the lz4 headers), in the build "
                             "directory, which is then kept")
    parser.add_argument("--stall-in", type=_probability, default=0.0, metavar="P",
                        help="probability that the host holds input `valid` low before a word (default 0)")
    parser.add_argument("--stall-out", type=_probability, default=0.0, metavar="P",
                        help="probability that the host holds output `ready` low in a cycle in which an output word is "
                             "offered (default 0)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the stall patterns (default 0; parallel job k uses seed + k)")
    parser.add_argument("--jobs", "-j", type=int, default=None, metavar="N",
                        help="simulator processes at once on the native Verilator path (Verilator without "
                             "--waves): the sequences split into N contiguous shares at sequence starts, one "
                             "build, each share checked word for word, one merged report (default: the "
                             "number of CPUs, at most one per sequence; 1 on the other paths, which take no "
                             "other value)")
    parser.add_argument("--build-dir", type=Path, default=None, metavar="DIR",
                        help="keep the Verilog, simulator build, logs and case files here (default: a temporary "
                             "directory, removed after a passing run without --waves)")
    parser.set_defaults(func=run)


class _Progress:
    """Progress lines on stderr while the simulator runs: rewritten in place on a terminal, else every 5 s."""

    def __init__(self, stream=None):
        self._stream = stream if stream is not None else sys.stderr   # looked up now: it may be redirected
        self._tty = self._stream.isatty()
        self._last = 0.0
        self._shown = False

    def __call__(self, update: dict) -> None:
        now = time.monotonic()
        final = update["frames"] == update["total"]
        if not self._tty and not final and now - self._last < 5.0:
            return
        self._last = now
        rate = update["frames"] / update["wall"] if update["wall"] > 0 else 0.0
        line = (f"  frame {update['frames']}/{update['total']}, {update['cycles']} cycles, "
                f"{update['mismatches']} mismatching word(s), {rate:.1f} frames/s")
        if self._tty:
            self._stream.write("\r" + line + "\x1b[K")
            self._shown = True
        else:
            self._stream.write(line + "\n")
        self._stream.flush()

    def close(self) -> None:
        if self._shown:
            self._stream.write("\n")
            self._stream.flush()


def _frame_position(index: int, shape: tuple) -> str:
    """A flat frame index as 'frame t' or 'sequence b, frame t' of the user's input."""
    if len(shape) == 3:
        return f"sequence {index // shape[1]}, frame {index % shape[1]}"
    return f"frame {index}"


def _load_utterances(args, encoded):
    """--features mode: the utterances to run and, with --float-model, that model (checked now, before the
    simulation)."""
    from ..spec.errors import ParameterError
    from ..sw.speech.utterances import UtteranceSample

    if args.head is None:
        raise ParameterError("--features needs --head (the classifier's normalisation and linear head)")
    check_at_least(args.count, 1, "--count")
    lstm_size = (encoded.layers[0].input_size, encoded.layers[-1].recurrent_size)
    utterances = UtteranceSample.load(args.features, args.head, args.count, lstm_size)
    float_model = None
    if args.float_model is not None:
        float_model = load_model_file(args.float_model, args)
        if (float_model.input_size, float_model.output_size) != lstm_size:
            raise ParameterError(f"{args.float_model}: input {float_model.input_size}, output "
                                 f"{float_model.output_size}, but the encoded model has {lstm_size[0]}, "
                                 f"{lstm_size[1]}")
    return utterances, float_model


def _print_classification(utterances, float_model, outputs: np.ndarray, float_model_path) -> dict:
    from ..sw.reference import reference_forward

    float_outputs = None if float_model is None else reference_forward(float_model, utterances.inputs)
    result = utterances.classify(outputs, float_outputs,
                                 None if float_model_path is None else str(float_model_path))
    print("\n".join(utterances.format_classification(result)))
    return result


def run(args: argparse.Namespace) -> int:
    from ..hw.params import HardwareParams
    from ..hw.verilog import generate
    from ..sim.runner import default_jobs, run_accelerator_sim, runs_native
    from ..sim.tools import find_simulator
    from ..sw.format import load_encoded
    from ..spec.errors import ParameterError
    from ..sw.fixedpoint import dequantize_output

    if args.input is not None and args.output is None:
        raise ParameterError("--output is required with --input")
    for path, flag in ((args.output, "--output"), (args.report, "--report")):
        if path is not None:
            check_output_file(path, flag)
    if args.build_dir is not None:
        check_output_dir(args.build_dir, "--build-dir")
    encoded = load_encoded(args.encoded)
    numerics = encoded.numerics
    utterances = float_model = None
    if args.features is not None:
        utterances, float_model = _load_utterances(args, encoded)
        x = utterances.inputs
        check_frames(x, encoded.layers[0].input_size, args.features)
    else:
        x = load_frames(args.input, encoded.layers[0].input_size)
    starts = None if args.starts is None else load_sequence_starts(args.starts, x.shape[:-1])
    x_q, saturated = quantize_frames(x, numerics, args.raw, "sim", args.input or args.features)
    find_simulator(args.simulator)                 # fail before any work if it is missing
    jobs = default_jobs(args.simulator, args.waves) if args.jobs is None else args.jobs
    check_at_least(jobs, 1, "--jobs")
    if jobs > 1 and not runs_native(args.simulator, args.waves):
        raise ParameterError(f"--jobs {jobs}: parallel jobs run on the native Verilator path only "
                             "(--simulator verilator, no --waves)")
    params = HardwareParams(lanes=args.lanes, streams=args.streams) if args.fifo_depth is None else \
        HardwareParams(fifo_depth=args.fifo_depth, lanes=args.lanes, streams=args.streams)

    temporary = args.build_dir is None
    build_dir = Path(tempfile.mkdtemp(prefix="sparselstm-sim-")) if temporary else args.build_dir
    keep = not temporary
    try:
        started = time.monotonic()
        verilog_dir = build_dir / "verilog"
        sidecar = generate(encoded, params, verilog_dir, encoded_dir=args.encoded)
        verilog_seconds = time.monotonic() - started
        frames = int(np.prod(x_q.shape[:-1]))
        print(f"sparselstm sim: {args.simulator}, {encoded.n_pes} PE(s), {sidecar['lanes']} element-wise lane(s), "
              + (f"{params.streams} interleaved streams, " if params.streams > 1 else "")
              + f"{frames} frame(s); Verilog generated in "
              f"{verilog_seconds:.1f} s, building...", file=sys.stderr, flush=True)
        progress = _Progress()
        try:
            result = run_accelerator_sim(verilog_dir, args.encoded, x_q, sequence_starts=starts,
                                         simulator=args.simulator, build_dir=build_dir / f"sim_{args.simulator}",
                                         waves=args.waves, stall_in=args.stall_in, stall_out=args.stall_out,
                                         seed=args.seed, progress=progress, encoded=encoded, jobs=jobs)
        finally:
            progress.close()
        keep = keep or args.waves or not result.passed
        _print_report(result, sidecar, x_q.shape, args, delta_mode=encoded.delta_thresholds is not None)
        delta = delta_report(encoded, x_q, starts, params)
        complete = result.outputs.shape[:-1] == x_q.shape[:-1]
        classification = None
        if complete and utterances is not None:
            classification = _print_classification(utterances, float_model,
                                                   dequantize_output(result.outputs, numerics), args.float_model)
        if complete and args.output is not None:
            y = result.outputs if args.raw else dequantize_output(result.outputs, numerics)
            save_npy(args.output, y)
            kind = "act words (int64)" if args.raw else "float64"
            print(f"wrote {args.output}: {kind}, shape {y.shape}")
        elif not complete:
            print(f"sparselstm sim: outputs incomplete: only {result.frames_received} of {result.frames} "
                  "frame(s) came out", file=sys.stderr)
        if args.report is not None:
            report = result.to_dict()
            if classification is not None:
                report["classification"] = classification
            if delta is not None:
                report["delta"] = delta
            report.update({"encoded": str(args.encoded), "input": str(args.input or args.features),
                           "input_saturated": saturated,
                           "hardware_params": params.to_dict(), "cycle_model": sidecar.get("cycle_model"),
                           "verilog_seconds": round(verilog_seconds, 3)})
            if not keep:
                report["build_dir"] = None
            save_json(args.report, report, indent=2)
            print(f"report: {args.report}")
        if keep and temporary:
            print(f"sparselstm sim: build directory kept: {build_dir}", file=sys.stderr)
        return 0 if result.passed else 1
    finally:
        if temporary and not keep:
            shutil.rmtree(build_dir, ignore_errors=True)


def _print_report(result, sidecar: dict, shape: tuple, args, delta_mode: bool = False) -> None:
    verdict = "PASS" if result.passed else "FAIL"
    print(f"{verdict}: {result.frames_received}/{result.frames} frame(s), {result.mismatches} mismatching word(s) "
          f"against the golden model ({result.simulator})")
    if result.first_mismatch:
        m = result.first_mismatch
        print(f"  first mismatch: {_frame_position(m['frame'], shape)}, element {m['element']}: "
              f"expected {m['expected']}, got {m['got']}")
    for error in result.errors:
        print(f"  error: {error}")
    model = (sidecar.get("cycle_model") or {}).get("cycles_per_frame")
    if result.cycles_per_frame is not None:
        # in delta mode the sidecar's prediction has every column sent; delta mode's follows
        predicted = ("" if not model else f" (cycle model with every column sent: {model}; in delta mode: below)"
                     if delta_mode else f" (cycle model: {model})")
        latency = result.first_frame_latency
        # Frame 0 of a stream: the next frame's input interleaves with its element-wise pass, so it can
        # take longer than the lone frame that the cycle model's latency describes.
        alone = (sidecar.get("cycle_model") or {}).get("first_frame_cycles")
        print(f"  cycles per frame {result.cycles_per_frame:.1f}{predicted}; first-frame latency "
              f"{latency if latency is not None else '-'} cycles in the stream"
              f"{f' (a lone frame, cycle model: {alone})' if alone else ''}; {result.sim_cycles} cycles simulated")
    utilisation = result.pe_utilisation
    if utilisation:
        pads = sum(v for v in result.counters.get("pad_cycles", []) if isinstance(v, int))
        print(f"  PE utilisation (MAC cycles / busy cycles): mean {100 * np.mean(utilisation):.1f} %, "
              f"min {100 * min(utilisation):.1f} %, max {100 * max(utilisation):.1f} %; padding cycles {pads}")
    rate = result.frames_per_second
    cycles_rate = result.sim_cycles / result.stream_seconds if result.stream_seconds > 0 else 0.0
    print(f"  wall time: build {result.build_seconds:.1f} s, simulation {result.run_seconds:.1f} s; "
          f"{rate or 0.0:.1f} frames/s ({cycles_rate:.0f} cycles/s) of wall time"
          + (f"; stalls in {args.stall_in:g} / out {args.stall_out:g}" if args.stall_in or args.stall_out else ""))
    if result.jobs:
        cpu_rate = result.cycles_per_cpu_second or 0.0
        print(f"  {len(result.jobs)} parallel jobs: {cycles_rate:.0f} cycles/s of wall time over all, "
              f"{cpu_rate:.0f} per CPU second; "
              + ", ".join(f"job {job['job']} frames {job['frames'][0]}-{job['frames'][1] - 1} "
                          f"{job['stream_seconds']:.1f} s" for job in result.jobs))
    if result.waves is not None:
        print(f"  waveform: {result.waves}")
    if not result.passed and result.log_file is not None:
        print(f"  log: {result.log_file}")
