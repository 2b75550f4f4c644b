"""espeak-ng, the only speech source here, and the inventory of its distinct English voices.

Voices: every English accent espeak-ng ships (its own voices, not the MBROLA ones, which need extra
packages) times every voice variant (`espeak-ng --voices=variant`), plus the accent's default voice.
Many variants sound the same (caleb, klatt and klatt6, for instance): each voice says a probe sentence
and voices whose audio is byte-identical are collapsed into one. The unit of the train/validation/test split
is the variant (sw/speech/corpus.py), and variants found identical in any accent are merged into one unit.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np

from ...spec.errors import SparseLSTMError
from .features import resample

PROBE_SENTENCE = "the quick brown fox jumps over a lazy dog"
DEFAULT_VARIANT = "default"


class CorpusError(SparseLSTMError):
    """The corpus cannot be built or read (espeak-ng missing, bad options, unreadable files)."""


# --------------------------------------------------------------------------------------------- espeak-ng

def espeak_binary() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise CorpusError("espeak-ng is not installed (Debian/Ubuntu: apt-get install espeak-ng); it is only "
                          "needed to build corpora - the shipped models and feature sets in models/ work without it")
    return path


def espeak_version() -> str:
    return subprocess.run([espeak_binary(), "--version"], capture_output=True, text=True).stdout.strip()


def _voice_table(argument: str) -> list[dict]:
    out = subprocess.run([espeak_binary(), argument], capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 5:
            rows.append(dict(language=fields[1], name=fields[3], file=fields[4]))
    return rows


def list_accents() -> list[str]:
    """English accents of espeak-ng's own voices, by voice file (e.g. gmw/en-US). MBROLA voices (mb/...) are
    left out: they need extra packages. The file, not the language code, selects the accent because
    `-v en-gb+VARIANT` silently ignores the variant in espeak-ng 1.51 while `-v gmw/en+VARIANT` applies it."""
    accents = {row["file"] for row in _voice_table("--voices=en")
               if not row["file"].startswith("mb/") and row["language"] != "variant"}
    return sorted(accents)


def list_variants() -> list[str]:
    """Voice variant names (the file names under !v/, which is what `-v accent+variant` looks up)."""
    return sorted({row["file"].split("/", 1)[1] for row in _voice_table("--voices=variant")
                   if row["file"].startswith("!v/")})


def voice_id(accent: str, variant: str) -> str:
    return accent if variant == DEFAULT_VARIANT else f"{accent}+{variant}"


def split_voice_id(voice: str) -> tuple[str, str]:
    accent, _, variant = voice.rpartition("+") if "+" in voice else (voice, "", "")
    return accent, variant or DEFAULT_VARIANT


def espeak_pcm(text: str, voice: str, speed: float = 175, pitch: float = 50) -> tuple[bytes, int]:
    """Raw 16-bit PCM bytes and the sample rate of espeak-ng saying `text`."""
    result = subprocess.run([espeak_binary(), "-v", voice, "-s", str(int(round(speed))), "-p", str(int(round(pitch))),
                             "--stdout", text], capture_output=True)
    data = result.stdout
    if result.returncode != 0 or len(data) < 44 or data[:4] != b"RIFF":
        raise CorpusError(f"espeak-ng failed for voice {voice!r}: {result.stderr.decode(errors='replace').strip()}")
    rate = int.from_bytes(data[24:28], "little")
    start = data.find(b"data", 12)
    # espeak-ng writes an unknown length (0xFFFFFFFF) when streaming to stdout: take everything after the header.
    return data[start + 8:], rate


def synthesise(text: str, voice: str, speed: float, pitch: float, sample_rate: int) -> np.ndarray:
    pcm, rate = espeak_pcm(text, voice, speed, pitch)
    audio = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float64) / 32768.0
    return resample(audio, rate, sample_rate)


# -------------------------------------------------------------------------------------- voice inventory

def _probe(voice: str) -> tuple[str, str | None]:
    try:
        pcm, _ = espeak_pcm(PROBE_SENTENCE, voice)
    except CorpusError:
        return voice, None
    if not any(pcm):
        return voice, None
    return voice, hashlib.sha256(pcm).hexdigest()


@dataclass(frozen=True)
class VoiceInventory:
    voices: tuple[str, ...]                   # unique voices, "accent" or "accent+variant"
    duplicates: dict                          # kept voice -> voices that sounded identical to it
    groups: tuple[tuple[str, ...], ...]       # variant groups: the unit of the split
    failed: tuple[str, ...]                   # voices espeak-ng could not speak with


def _find(parent: dict, x):
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


def group_variants(voices_by_hash: dict[str, list[str]], variants: list[str]) -> list[tuple[str, ...]]:
    """Union-find: variants that produced identical audio in any accent belong to one group.

    A variant identical to an accent's default voice is a no-op there and says nothing about its timbre,
    so such groups are skipped (otherwise one accent that ignores variants would merge them all)."""
    parent = {v: v for v in variants}
    for same in voices_by_hash.values():
        names = [split_voice_id(v)[1] for v in same]
        if DEFAULT_VARIANT in names:
            continue
        for other in names[1:]:
            a, b = _find(parent, names[0]), _find(parent, other)
            if a != b:
                parent[max(a, b)] = min(a, b)
    groups: dict[str, list[str]] = {}
    for v in variants:
        groups.setdefault(_find(parent, v), []).append(v)
    return sorted(tuple(sorted(g)) for g in groups.values())


def dedup_by_hash(hashes: list[tuple[str, str | None]]) -> tuple[list[str], dict[str, list[str]], list[str],
                                                                  dict[str, list[str]]]:
    """(voice, audio hash) pairs -> kept voices (first of each hash in the given order), duplicates of
    each kept voice, failed voices, and all voices by hash."""
    by_hash: dict[str, list[str]] = {}
    failed = []
    for voice, digest in hashes:
        if digest is None:
            failed.append(voice)
        else:
            by_hash.setdefault(digest, []).append(voice)
    kept = [same[0] for same in by_hash.values()]
    duplicates = {same[0]: same[1:] for same in by_hash.values() if len(same) > 1}
    return kept, duplicates, failed, by_hash


def build_inventory(workers: int = 1, progress: bool = True, accents: list[str] | None = None,
                    variants: list[str] | None = None) -> VoiceInventory:
    """Probe every accent x variant (default: all English accents, all variants and the default voice),
    drop voices whose probe audio is identical to an earlier one, and group variants for the split."""
    from tqdm import tqdm

    accents = list(accents) if accents is not None else list_accents()
    variants = list(variants) if variants is not None else [DEFAULT_VARIANT] + list_variants()
    candidates = [voice_id(a, v) for a in accents for v in variants]
    with WorkerPool(workers) as pool:
        mapper = pool.imap if pool else map
        hashes = list(tqdm(mapper(_probe, candidates), total=len(candidates), desc="voices (dedup)",
                           unit="voice", disable=not progress))
    kept, duplicates, failed, by_hash = dedup_by_hash(hashes)
    kept_set = set(kept)
    groups = [g for g in group_variants(by_hash, variants)
              if any(voice_id(a, v) in kept_set for a in accents for v in g)]
    return VoiceInventory(tuple(kept), duplicates, tuple(groups), tuple(failed))


def split_groups(groups, val_fraction: float, test_fraction: float, seed: int) -> dict[str, list]:
    """Deal the variant groups to test, val and train (at least one group each) by a seeded shuffle."""
    groups = list(groups)
    if len(groups) < 3:
        raise CorpusError(f"need at least 3 distinct variant groups to split by voice, found {len(groups)}")
    order = np.random.default_rng(seed).permutation(len(groups))
    n_test = max(1, int(round(test_fraction * len(groups))))
    n_val = max(1, int(round(val_fraction * len(groups))))
    shuffled = [groups[i] for i in order]
    return {"test": shuffled[:n_test], "val": shuffled[n_test:n_test + n_val], "train": shuffled[n_test + n_val:]}


def voices_of_split(inventory: VoiceInventory, groups) -> list[str]:
    variants = {v for g in groups for v in g}
    return [v for v in inventory.voices if split_voice_id(v)[1] in variants]


class WorkerPool:
    """multiprocessing.Pool when workers > 1, else None (work inline: easier to debug, no fork)."""

    def __init__(self, workers: int, initializer=None, initargs=()):
        self.workers, self.initializer, self.initargs, self.pool = workers, initializer, initargs, None

    def __enter__(self):
        if self.workers > 1:
            self.pool = multiprocessing.get_context("fork").Pool(self.workers, self.initializer, self.initargs)
        elif self.initializer:
            self.initializer(*self.initargs)
        return self.pool

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
