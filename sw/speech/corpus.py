"""A keyword-spotting corpus synthesised with espeak-ng, since no speech corpus can be downloaded here.

Voices: every English accent espeak-ng ships (its own voices, not the MBROLA ones, which need extra
packages) times every voice variant (`espeak-ng --voices=variant`), plus the accent's default voice.
Many variants sound the same (caleb, klatt and klatt6, for instance): each voice says a probe sentence
and voices whose audio is byte-identical are collapsed into one.

Split by voice: the unit of the train/validation/test split is the *variant* (the timbre), so a test
variant is never heard in training in any accent. Variants found identical in any accent are merged
into one unit first, so a duplicate can never leak across the split.

Augmentation per utterance (all drawn from a generator seeded by the corpus seed and the utterance
index, so a corpus is reproducible whatever the number of worker processes): speaking rate, pitch,
gain, placement in the 1 s window, and additive noise - white, pink, or babble (other voices of the
*same* split saying non-vocabulary words) - at an SNR drawn uniformly from 0-20 dB.

Output: DIR/{train,val,test}.npz (features float16 (N, T, F) unnormalised log-mel, labels, and per
utterance metadata) and DIR/manifest.json (configuration, voices of each split, duplicates, timings).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .features import FeatureConfig, compute_features
from .voices import (CorpusError, VoiceInventory, WorkerPool, build_inventory, espeak_version,
                     split_groups, synthesise, voices_of_split)

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# The 35 words of Google's Speech Commands v2.
SPEECH_COMMANDS = (
    "backward", "bed", "bird", "cat", "dog", "down", "eight", "five", "follow", "forward", "four", "go",
    "happy", "house", "learn", "left", "marvin", "nine", "no", "off", "on", "one", "right", "seven",
    "sheila", "six", "stop", "three", "tree", "two", "up", "visual", "wow", "yes", "zero",
)

VOCABULARIES = {"digits": DIGITS, "words": SPEECH_COMMANDS}

# Words for babble noise: common English words in neither vocabulary (nor sounding like one).
BABBLE_WORDS = (
    "apple", "water", "morning", "people", "little", "number", "over", "under", "because", "table",
    "window", "paper", "garden", "yellow", "music", "money", "doctor", "summer", "winter", "kitchen",
    "station", "market", "simple", "problem", "family", "evening", "letter", "minute", "animal", "picture",
    "quiet", "orange", "button", "river", "basket", "pencil", "ticket", "camera", "silver", "jacket",
)

@dataclass(frozen=True)
class CorpusConfig:
    task: str = "digits"
    train_per_word: int = 120
    val_per_word: int = 20
    test_per_word: int = 20
    seed: int = 0
    window_s: float = 1.0
    speed_wpm: tuple[float, float] = (120.0, 220.0)   # espeak-ng -s
    pitch: tuple[float, float] = (20.0, 80.0)          # espeak-ng -p (0-99, default 50)
    peak_dbfs: tuple[float, float] = (-30.0, -3.0)     # level of the word's peak
    snr_db: tuple[float, float] = (0.0, 20.0)
    noise_kinds: tuple[str, ...] = ("white", "pink", "babble")
    babble_talkers: tuple[int, int] = (3, 6)
    babble_pool_per_split: int = 40                    # babble clips synthesised per split
    val_fraction: float = 0.1                          # of the variant groups
    test_fraction: float = 0.1
    features: FeatureConfig = field(default_factory=FeatureConfig)

    def __post_init__(self):
        if self.task not in VOCABULARIES:
            raise CorpusError(f"unknown task {self.task!r}; choose one of {sorted(VOCABULARIES)}")
        if min(self.train_per_word, self.val_per_word, self.test_per_word) < 1:
            raise CorpusError("every split needs at least one utterance per word")
        if not 0 < self.val_fraction + self.test_fraction < 1:
            raise CorpusError("val_fraction + test_fraction must be between 0 and 1")
        unknown = set(self.noise_kinds) - {"white", "pink", "babble", "none"}
        if unknown:
            raise CorpusError(f"unknown noise kind(s) {sorted(unknown)}")

    @property
    def vocabulary(self) -> tuple[str, ...]:
        return VOCABULARIES[self.task]

    def per_word(self, split: str) -> int:
        return {"train": self.train_per_word, "val": self.val_per_word, "test": self.test_per_word}[split]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["features"] = self.features.to_dict()
        return d


# Sizes of `sparselstm data --size`: utterances per word in train / val / test.
SIZES = {
    ("digits", "small"): dict(train_per_word=100, val_per_word=20, test_per_word=20, babble_pool_per_split=20),
    ("digits", "full"): dict(train_per_word=2000, val_per_word=250, test_per_word=250, babble_pool_per_split=200),
    ("words", "small"): dict(train_per_word=40, val_per_word=8, test_per_word=8, babble_pool_per_split=20),
    ("words", "full"): dict(train_per_word=1200, val_per_word=150, test_per_word=150, babble_pool_per_split=300),
}

SPLITS = ("train", "val", "test")


# ---------------------------------------------------------------------------------------- augmentation

def trim_silence(audio: np.ndarray, sample_rate: int, threshold: float = 0.02, margin_s: float = 0.01) -> np.ndarray:
    """Cut leading and trailing samples quieter than `threshold` x the peak (keeping a short margin)."""
    peak = np.max(np.abs(audio)) if audio.size else 0.0
    if peak == 0:
        return audio[:0]
    loud = np.flatnonzero(np.abs(audio) >= threshold * peak)
    margin = int(margin_s * sample_rate)
    return audio[max(0, loud[0] - margin): loud[-1] + margin + 1]


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f power noise by shaping white noise's spectrum (amplitude ~ 1/sqrt(f))."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.arange(spectrum.shape[0], dtype=np.float64)
    freqs[0] = 1.0
    noise = np.fft.irfft(spectrum / np.sqrt(freqs), n=n)
    return noise / (np.std(noise) + 1e-12)


def mix_babble(pool: list[np.ndarray], n: int, talkers: int, rng: np.random.Generator) -> np.ndarray:
    """Sum of `talkers` clips from the pool, each looped to n samples from a random start, at equal power."""
    noise = np.zeros(n)
    for index in rng.choice(len(pool), size=min(talkers, len(pool)), replace=False):
        clip = pool[index]
        looped = np.resize(np.roll(clip, -int(rng.integers(len(clip)))), n)
        noise += looped / (np.std(looped) + 1e-12)
    return noise / (np.std(noise) + 1e-12)


def place_and_mix(word: np.ndarray, window: int, offset: int, noise: np.ndarray | None, snr_db: float) -> np.ndarray:
    """Word at `offset` in a silent window, plus noise scaled so that speech power / noise power = snr_db.

    Speech power is measured over the word itself (not the window), the usual definition for short words."""
    out = np.zeros(window)
    out[offset:offset + len(word)] = word
    if noise is not None:
        speech_power = np.mean(word ** 2)
        noise_power = np.mean(noise ** 2) + 1e-20
        out += noise * np.sqrt(speech_power / noise_power / 10 ** (snr_db / 10))
    return out


# ------------------------------------------------------------------------------------------ utterances

@dataclass(frozen=True)
class UtteranceSpec:
    index: int
    split: str
    word: str
    label: int
    voice: str


_WORKER_BABBLE: dict[str, list[np.ndarray]] = {}
_WORKER_CONFIG: CorpusConfig | None = None


def _init_worker(config: CorpusConfig, babble: dict[str, list[np.ndarray]]):
    global _WORKER_CONFIG, _WORKER_BABBLE
    _WORKER_CONFIG, _WORKER_BABBLE = config, babble
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def render_utterance(spec: UtteranceSpec, config: CorpusConfig,
                     babble_pool: list[np.ndarray]) -> tuple[np.ndarray, dict]:
    """The augmented 1 s audio of one utterance and its augmentation parameters."""
    rng = np.random.default_rng([config.seed, 1, spec.index])
    rate = config.features.sample_rate
    window = int(round(config.window_s * rate))
    speed = float(rng.uniform(*config.speed_wpm))
    pitch = float(rng.uniform(*config.pitch))
    for _ in range(8):
        word = trim_silence(synthesise(spec.word, spec.voice, speed, pitch, rate), rate)
        if len(word) <= window:
            break
        speed *= 1.2  # too long for the window: say it faster rather than cut it
    else:
        word = word[:window]
    if len(word) == 0:
        raise CorpusError(f"espeak-ng produced silence for {spec.word!r} with voice {spec.voice!r}")
    peak_db = float(rng.uniform(*config.peak_dbfs))
    word = word / np.max(np.abs(word)) * 10 ** (peak_db / 20)
    offset = int(rng.integers(0, window - len(word) + 1))
    kind = str(config.noise_kinds[rng.integers(len(config.noise_kinds))])
    snr = float(rng.uniform(*config.snr_db))
    if kind == "white":
        noise = rng.standard_normal(window)
    elif kind == "pink":
        noise = pink_noise(window, rng)
    elif kind == "babble":
        noise = mix_babble(babble_pool, window,
                           int(rng.integers(config.babble_talkers[0], config.babble_talkers[1] + 1)), rng)
    else:
        noise, snr = None, float("inf")
    audio = place_and_mix(word, window, offset, noise, snr)
    meta = dict(speed=speed, pitch=pitch, peak_db=peak_db, offset_s=offset / rate, word_s=len(word) / rate,
                noise=kind, snr_db=snr)
    return audio, meta


def _render_features(spec: UtteranceSpec):
    config = _WORKER_CONFIG
    audio, meta = render_utterance(spec, config, _WORKER_BABBLE[spec.split])
    return spec.index, compute_features(audio, config.features).astype(np.float16), meta


def _babble_clip(args):
    seed, index, voice, rate = args
    rng = np.random.default_rng([seed, 2, index])
    text = " ".join(rng.choice(BABBLE_WORDS, size=4, replace=False))
    return trim_silence(synthesise(text, voice, rng.uniform(140, 200), rng.uniform(30, 70), rate), rate)


def plan_utterances(config: CorpusConfig, voices: dict[str, list[str]]) -> list[UtteranceSpec]:
    """Balanced plan: per split, per_word utterances of every word; voices dealt round-robin from a seeded
    shuffle so each voice says every word about equally often."""
    specs = []
    rng = np.random.default_rng([config.seed, 0])
    for split in SPLITS:
        split_voices = list(voices[split])
        if not split_voices:
            raise CorpusError(f"no voices in the {split} split")
        for label, word in enumerate(config.vocabulary):
            order = rng.permutation(len(split_voices))
            for k in range(config.per_word(split)):
                specs.append(UtteranceSpec(len(specs), split, word, label, split_voices[order[k % len(order)]]))
    return specs


def build_corpus(config: CorpusConfig, outdir: str | os.PathLike, workers: int = 1, progress: bool = True,
                 inventory: VoiceInventory | None = None) -> dict:
    """Synthesise, augment and featurise the corpus into `outdir`; returns the manifest."""
    from tqdm import tqdm

    outdir = Path(outdir)
    started = time.time()
    if inventory is None:
        inventory = build_inventory(workers, progress)
    groups = split_groups(inventory.groups, config.val_fraction, config.test_fraction, config.seed)
    voices = {split: voices_of_split(inventory, groups[split]) for split in SPLITS}
    rate = config.features.sample_rate

    # Babble talkers are voices of the same split: test babble never contains a training voice either.
    babble_jobs = {}
    for split_number, split in enumerate(SPLITS):
        pick = np.random.default_rng([config.seed, 3, split_number]).integers(len(voices[split]),
                                                                              size=config.babble_pool_per_split)
        babble_jobs[split] = [(config.seed, split_number * 1_000_000 + k, voices[split][v], rate)
                              for k, v in enumerate(pick)]
    babble = {}
    with WorkerPool(workers) as pool:
        mapper = pool.imap if pool else map
        for split in SPLITS:
            babble[split] = list(tqdm(mapper(_babble_clip, babble_jobs[split]), total=len(babble_jobs[split]),
                                      desc=f"babble ({split})", unit="clip", disable=not progress))

    specs = plan_utterances(config, voices)
    window = int(round(config.window_s * rate))
    steps, width = config.features.steps(window), config.features.feature_size
    features = np.zeros((len(specs), steps, width), dtype=np.float16)
    metas: list[dict] = [{}] * len(specs)
    with WorkerPool(workers, _init_worker, (config, babble)) as pool:
        mapper = (lambda f, it: pool.imap(f, it, chunksize=16)) if pool else map
        for index, feats, meta in tqdm(mapper(_render_features, specs), total=len(specs),
                                       desc=f"{config.task} utterances", unit="utt", disable=not progress):
            features[index] = feats
            metas[index] = meta

    outdir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split in SPLITS:
        rows = [s.index for s in specs if s.split == split]
        counts[split] = len(rows)
        save_feature_set(outdir / f"{split}.npz", features[rows], np.array([specs[i].label for i in rows]),
                         config.vocabulary, config.features,
                         voices=[specs[i].voice for i in rows],
                         **{key: [metas[i][key] for i in rows] for key in metas[rows[0]]})
    manifest = dict(
        task=config.task, vocabulary=list(config.vocabulary), counts=counts, config=config.to_dict(),
        espeak_ng=espeak_version(), voices={s: voices[s] for s in SPLITS},
        variant_groups={s: [list(g) for g in groups[s]] for s in SPLITS},
        duplicate_voices=inventory.duplicates, failed_voices=list(inventory.failed),
        seconds=round(time.time() - started, 1), workers=workers,
    )
    (outdir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


# ------------------------------------------------------------------------------------------ feature sets

def save_feature_set(path, features: np.ndarray, labels: np.ndarray, vocabulary, feature_config: FeatureConfig,
                     compressed: bool = False, **metadata) -> None:
    """One split as a self-contained .npz: features (N, T, F) float16, labels (N,), vocabulary, feature
    configuration (JSON) and any per-utterance metadata (voices, augmentation parameters). `compressed`
    saves ~15 % (log-mel values compress poorly) at some cost in time: for the small files shipped in git."""
    arrays = {f"meta_{k}": np.asarray(v) for k, v in metadata.items()}
    (np.savez_compressed if compressed else np.savez)(path, features=np.asarray(features, dtype=np.float16),
             labels=np.asarray(labels, dtype=np.int16), vocabulary=np.asarray(list(vocabulary)),
             feature_config=np.asarray(json.dumps(feature_config.to_dict())), **arrays)
