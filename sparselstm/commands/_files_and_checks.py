"""What every command does with its files and arguments, once: read .npy inputs and check their shape,
quantise float inputs with the saturation warning, check output paths before the work starts, save arrays,
JSON and text, and the common argument checks. Every problem is a ParameterError naming the file or flag."""

from __future__ import annotations

import json
import os
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np

from ..spec.errors import ParameterError

# ----------------------------------------------------------------------------------------------------------
# Reading


def load_npy(path: Path, what: str) -> np.ndarray:
    """One array from a .npy file; `what` names it in errors ("input", "sequence starts")."""
    if path.is_dir():
        raise ParameterError(f"{path}: is a directory; expected the {what} .npy file")
    if not path.is_file():
        raise ParameterError(f"{path}: {what} file not found")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise ParameterError(f"{path}: not a readable .npy array ({error})") from None
    if not isinstance(array, np.ndarray):
        raise ParameterError(f"{path}: expected a single .npy array, got an .npz archive")
    return array


def load_numeric_npy(path: Path, what: str) -> np.ndarray:
    """load_npy, and the array must hold real numbers (float or integer)."""
    array = load_npy(path, what)
    check_numeric(array, path)
    return array


def load_json(path: Path, what: str):
    """The content of a JSON file; `what` names it in errors ("densities")."""
    if path.is_dir():
        raise ParameterError(f"{path}: is a directory; expected the {what} JSON file")
    if not path.is_file():
        raise ParameterError(f"{path}: {what} file not found")
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ParameterError(f"{path}: not valid JSON ({error})") from None


def check_numeric(array: np.ndarray, source) -> None:
    """A real-valued array (float or integer dtype); `source` names it in the error."""
    if array.dtype.kind not in "fiu":
        raise ParameterError(f"{source}: expected a real-valued numeric array, got dtype {array.dtype}")


def check_frames(array: np.ndarray, input_size: int, source) -> None:
    """Input frames: numeric, finite, shape (T, I) or (B, T, I) with B, T >= 1 and I = `input_size`.

    The commands reject an empty batch although the library accepts it: an empty X.npy is a mistake of
    the user's, not a run worth writing an empty output file for (and a simulation of it checks nothing)."""
    check_numeric(array, source)
    if array.ndim in (2, 3) and array.shape[-1] != input_size:
        raise ParameterError(f"{source}: input: last dimension is {array.shape[-1]}, the model's input size is "
                             f"{input_size}; expected shape (T, {input_size}) or (B, T, {input_size}), "
                             f"got {array.shape}")
    if array.ndim not in (2, 3) or 0 in array.shape:
        raise ParameterError(f"{source}: expected shape (T, {input_size}) or (B, T, {input_size}) with B, T >= 1, "
                             f"got {array.shape}")
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise ParameterError(f"{source}: {int(np.count_nonzero(~np.isfinite(array)))} non-finite value(s) "
                             f"(NaN or Inf)")


def load_frames(path: Path, input_size: int) -> np.ndarray:
    """The input frames of X.npy, checked by check_frames."""
    array = load_npy(path, "input")
    check_frames(array, input_size, path)
    return array


def load_sequence_starts(path: Path, frames_shape: tuple) -> np.ndarray:
    """The --starts flags of S.npy: booleans (or 0/1), one per frame of the input (shape `frames_shape`)."""
    starts = load_npy(path, "sequence starts")
    if starts.shape != tuple(frames_shape):
        raise ParameterError(f"{path}: expected shape {tuple(frames_shape)} (one flag per input frame), "
                             f"got {starts.shape}")
    if starts.dtype.kind not in "biu" or not np.all((starts == 0) | (starts == 1)):
        raise ParameterError(f"{path}: expected booleans (or 0/1), got dtype {starts.dtype}")
    return starts


def quantize_frames(x: np.ndarray, numerics, raw: bool, command: str, source) -> tuple[np.ndarray, int]:
    """Input frames as act words and how many saturated: integer frames as they are with --raw (they must
    fit the act word), else quantised, with a warning on stderr when some saturate."""
    from ..sw.fixedpoint import quantize_input

    if raw and x.dtype.kind in "iu":
        low, high = -(1 << (numerics.act_bits - 1)), (1 << (numerics.act_bits - 1)) - 1
        if int(x.min()) < low or int(x.max()) > high:
            raise ParameterError(f"{source}: with --raw, integer inputs are act words, but some lie outside the "
                                 f"{numerics.act_bits}-bit range [{low}, {high}]")
        return x, 0
    x_q, saturated = quantize_input(x, numerics)
    if saturated:
        limit = 2.0 ** (numerics.act_bits - 1 - numerics.act_frac)
        print(f"sparselstm {command}: warning: {saturated} of {x.size} input value(s) saturated to the act "
              f"range [{-limit:g}, {limit:g})", file=sys.stderr)
    return x_q, saturated


# ----------------------------------------------------------------------------------------------------------
# Output paths: checked before the work, so a long run never fails at its last step


def _check_creatable_in(path: Path, flag: str) -> None:
    """`path` (missing) could be created: its nearest existing ancestor is a directory we can write in."""
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ParameterError(f"{flag} {path}: {ancestor} is not a directory")
    try:
        # A real probe: permission bits do not tell for root, read-only file systems or quotas.
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as error:
        raise ParameterError(f"{flag} {path}: cannot write in {ancestor} ({error.strerror or error})") from None


def check_output_file(path: Path, flag: str = "--output") -> None:
    """`path` can be written as a file: not a directory, and writable or creatable (parents included)."""
    if path.is_dir():
        raise ParameterError(f"{flag} {path}: is a directory; give the file to write")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise ParameterError(f"{flag} {path}: exists and is not writable")
    else:
        _check_creatable_in(path, flag)


def check_output_dir(path: Path, flag: str = "--output") -> None:
    """`path` can hold a command's output files: an existing writable directory, or creatable."""
    if path.exists() and not path.is_dir():
        raise ParameterError(f"{flag} {path}: exists and is not a directory")
    _check_creatable_in(path / "probe", flag)


# ----------------------------------------------------------------------------------------------------------
# Writing


def _write(path: Path, write) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Through a file object: np.save(name) would append ".npy" to a name without it.
        with open(path, "wb") as stream:
            write(stream)
    except OSError as error:
        raise ParameterError(f"{path}: cannot write ({error.strerror or error})") from None


def save_npy(path: Path, array: np.ndarray) -> None:
    """`array` to the .npy file `path` (exactly that name), parents created."""
    _write(path, lambda stream: np.save(stream, array))


def command_line() -> str:
    """The command as typed, recorded in the files it writes (provenance)."""
    return shlex.join(["sparselstm"] + sys.argv[1:]) if sys.argv else ""


def save_json(path: Path, data, indent: int = 1) -> None:
    """`data` as JSON to `path`, parents created."""
    _write(path, lambda stream: stream.write((json.dumps(data, indent=indent) + "\n").encode()))


# ----------------------------------------------------------------------------------------------------------
# Arguments


def add_frame_arguments(parser) -> None:
    """--input, --output, --raw and --starts, of the commands that run frames through an encoded model."""
    parser.add_argument("--input", "-i", type=Path, required=True, metavar="X.npy",
                        help="input frames, shape (T, I) or (B, T, I): real values (quantised to act words), or "
                             "with --raw and an integer dtype, act words as they are")
    parser.add_argument("--output", "-o", type=Path, required=True, metavar="Y.npy",
                        help="where to write the outputs, shape (T, out) or (B, T, out)")
    add_word_arguments(parser)


def add_lanes_argument(parser) -> None:
    """`--lanes L`: the element-wise lanes of the hardware (None: HardwareParams' default)."""
    parser.add_argument("--lanes", type=int, default=None, metavar="L",
                        help="element-wise lanes: 1, 2, 4, ... dividing the PE count (default: the fewest with which "
                             "the element-wise pass does not bound the frame, per the cycle model; "
                             "docs/architecture.md)")


def add_word_arguments(parser) -> None:
    """--raw and --starts, of the commands that run act words through an encoded model."""
    parser.add_argument("--raw", action="store_true",
                        help="write the integer act words (int64) instead of floats; an integer --input is then "
                             "taken as act words too")
    parser.add_argument("--starts", type=Path, default=None, metavar="S.npy",
                        help="optional bool (T,) or (B, T): True where a frame starts a new sequence (state "
                             "cleared); the first frame of each sequence always does")


def add_model_arguments(parser, what: str = "the one to use") -> None:
    """--prefix and --allow-extra-keys, of the commands that read a user's model file."""
    parser.add_argument("--prefix", default=None,
                        help=f"for a PyTorch checkpoint holding several LSTMs: the module path of {what} "
                             "(e.g. encoder.lstm)")
    add_extra_keys_argument(parser)


def add_extra_keys_argument(parser) -> None:
    parser.add_argument("--allow-extra-keys", action="store_true",
                        help="ignore keys or inputs of the model file that are not read (by default they are an "
                             "error: a misspelt key would otherwise drop part of the model silently)")


def load_model_file(path: Path, args):
    """The model at `path`, read with the command's --prefix and --allow-extra-keys."""
    from ..sw.loaders import load_model

    return load_model(path, prefix=getattr(args, "prefix", None),
                      allow_extra_keys=getattr(args, "allow_extra_keys", False))


def check_at_least(value: int, minimum: int, flag: str) -> int:
    """An integer flag's value, or a ParameterError naming the flag."""
    if value < minimum:
        raise ParameterError(f"{flag} must be at least {minimum}, got {value}")
    return value

