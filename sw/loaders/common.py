"""What every model reader shares: checked arrays, zip containers verified member by member, and the error for
keys a reader does not use."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from ...spec.errors import LoadError

EXTRA_KEYS_HINT = "pass allow_extra_keys=True (load_model) or --allow-extra-keys (command line) to ignore them"


def zip_names(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise LoadError(f"{path}: corrupted zip archive ({error})") from None


def is_zip(path: Path, what: str) -> bool:
    """zipfile.is_zipfile, with a damaged end record reported as damage: is_zipfile raises BadZipFile itself
    for some (a ZIP64 locator that names other disks), where it should answer."""
    try:
        return zipfile.is_zipfile(path)
    except zipfile.BadZipFile as error:
        raise LoadError(f"{path}: damaged {what} ({error})") from None


def verify_zip(path: Path, what: str) -> None:
    """Read every member of the zip container at `path`, so that zipfile checks each one's CRC-32.

    A damaged member is an error naming the file and the member; readers that only look at some members (or
    seek into them, as torch does) would otherwise take damaged weights for real ones.
    """
    member = None
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                member = info.filename
                with archive.open(info) as stream:
                    while stream.read(1 << 20):
                        pass
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError) as error:
        where = f"member {member!r}: " if member is not None else ""
        raise LoadError(f"{path}: damaged {what} ({where}{error})") from None


def reject_extra_keys(path: Path, extra, what: str, allow_extra_keys: bool, why: str = "", quote: bool = True) -> None:
    """Keys (or inputs) that a reader found but does not use are an error, unless ignored on purpose: a
    misspelt name would otherwise be dropped silently."""
    if extra and not allow_extra_keys:
        raise LoadError(f"{path}: unexpected {what} {preview(extra, quote=quote)}{why}; {EXTRA_KEYS_HINT}")


def preview(names, limit: int = 8, quote: bool = True) -> str:
    names = sorted(names)
    shown = ", ".join(repr(n) if quote else n for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def checked_array(path: Path, key: str, value, shape: tuple[int, ...] | None = None,
                   expected: str | None = None) -> np.ndarray:
    """`value` as a finite float64 array of `shape`; errors name the file and the key."""
    array = np.asarray(value)
    if array.dtype.kind not in "fiu":
        raise LoadError(f"{path}: {key}: expected a real-valued numeric array, got dtype {array.dtype}")
    array = array.astype(np.float64)
    if shape is not None and array.shape != tuple(shape):
        raise LoadError(f"{path}: {key}: expected shape {expected or tuple(shape)}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise LoadError(f"{path}: {key}: {bad} non-finite value(s) (NaN or Inf)")
    return array


def gate_rows(path: Path, key: str, array: np.ndarray) -> int:
    """The cell count H of a (4H, columns) gate matrix."""
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[0] % 4 or array.shape[1] == 0:
        raise LoadError(f"{path}: {key}: expected a (4*H, columns) matrix with H, columns >= 1, "
                        f"got shape {array.shape}")
    return array.shape[0] // 4
