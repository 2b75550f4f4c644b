"""The speech task: log-mel features against slow references, the corpus generator (dedup, split by voice,
augmentation), the Task interface and the shipped test feature sets. Needs neither PyTorch nor espeak-ng,
except the tests marked as needing espeak-ng (skipped without it)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from sparselstm.sw.speech import corpus, voices
from sparselstm.sw.speech.features import (FeatureConfig, compute_features, frame_signal, hz_to_mel, log_mel,
                                           mel_filterbank, mel_to_hz, normalisation_stats, normalise, resample,
                                           stack_frames)
from sparselstm.sw.speech.task import ClassifierHead, FeatureSet, Task, TaskError, synthetic_task

MODELS = Path(__file__).resolve().parent.parent / "models"
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")

CONFIG = FeatureConfig()


# ------------------------------------------------------------------------------------------ features

def slow_filterbank(config: FeatureConfig) -> np.ndarray:
    """Triangles written out bin by bin, from the textbook definition."""
    mels = np.linspace(hz_to_mel(config.fmin_hz), hz_to_mel(config.fmax_hz), config.mel_bands + 2)
    edges = [float(mel_to_hz(m)) for m in mels]
    bank = np.zeros((config.mel_bands, config.fft_size // 2 + 1))
    for band in range(config.mel_bands):
        left, centre, right = edges[band], edges[band + 1], edges[band + 2]
        for k in range(config.fft_size // 2 + 1):
            f = k * config.sample_rate / config.fft_size
            if left < f <= centre:
                bank[band, k] = (f - left) / (centre - left)
            elif centre < f < right:
                bank[band, k] = (right - f) / (right - centre)
    return bank


def test_mel_scale_round_trip_and_known_point():
    assert hz_to_mel(1000.0) == pytest.approx(1000.0, abs=0.1)  # HTK: 1000 Hz is ~1000 mel
    hz = np.array([0.0, 20.0, 440.0, 4000.0, 8000.0])
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(hz)), hz, atol=1e-9)


def test_filterbank_matches_slow_reference_and_is_well_formed():
    bank = mel_filterbank(CONFIG)
    np.testing.assert_allclose(bank, slow_filterbank(CONFIG), atol=1e-12)
    assert bank.shape == (40, 257)
    assert bank.min() >= 0 and bank.max() <= 1
    assert np.all(bank.max(axis=1) > 0.3), "a band is (almost) empty: the narrow low bands must catch a bin"
    peaks = bank.argmax(axis=1)
    assert np.all(np.diff(peaks) >= 0), "band centres must increase"
    # Adjacent triangles overlap only with their neighbours.
    overlap = (bank[:, None, :] > 0) & (bank[None, :, :] > 0)
    touching = overlap.any(axis=2)
    i, j = np.nonzero(touching)
    assert np.all(np.abs(i - j) <= 1)


@pytest.mark.parametrize("tone_hz", [300.0, 1000.0, 2500.0, 6000.0])
def test_pure_tone_lands_in_the_nearest_band(tone_hz):
    t = np.arange(CONFIG.sample_rate) / CONFIG.sample_rate
    features = log_mel(0.5 * np.sin(2 * np.pi * tone_hz * t), CONFIG)
    centres = mel_to_hz(np.linspace(hz_to_mel(CONFIG.fmin_hz), hz_to_mel(CONFIG.fmax_hz), CONFIG.mel_bands + 2))[1:-1]
    loudest = np.bincount(features.argmax(axis=1), minlength=CONFIG.mel_bands).argmax()
    nearest = np.argsort(np.abs(centres - tone_hz))[:2]  # the tone may sit between two centres
    assert loudest in nearest
    # Far bands are much quieter than the tone's band (window leakage is far below the peak).
    far = np.abs(centres - tone_hz) > 0.5 * tone_hz
    assert features[:, loudest].mean() - features[:, far].max(axis=1).mean() > 8  # e^8 ~ 35 dB


def test_log_mel_matches_frame_by_frame_reference():
    rng = np.random.default_rng(0)
    audio = rng.standard_normal(4000)
    got = log_mel(audio, CONFIG)
    n = CONFIG.frame_length
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)
    bank = slow_filterbank(CONFIG)
    expected = []
    for start in range(0, len(audio) - n + 1, CONFIG.hop_length):
        spectrum = np.fft.rfft(audio[start:start + n] * window, CONFIG.fft_size)
        expected.append(np.log(bank @ np.abs(spectrum) ** 2 + CONFIG.log_floor))
    np.testing.assert_allclose(got, np.array(expected), rtol=1e-9, atol=1e-9)
    assert got.shape[0] == CONFIG.frames(4000) == 1 + (4000 - 400) // 160


def test_framing_and_stacking_order():
    signal = np.arange(10.0)
    np.testing.assert_array_equal(frame_signal(signal, 4, 3), [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]])
    frames = np.arange(5 * 2).reshape(5, 2)          # 5 frames of 2 bands
    stacked = stack_frames(frames, 2)
    np.testing.assert_array_equal(stacked, [[0, 1, 2, 3], [4, 5, 6, 7]])  # oldest first; last odd frame dropped


def test_one_second_gives_49_steps_of_80():
    features = compute_features(np.zeros(16000), CONFIG)
    assert features.shape == (49, 80) == (CONFIG.steps(16000), CONFIG.feature_size)
    assert np.all(np.isfinite(features))  # silence stays finite thanks to the floor


def test_resample_preserves_a_tone():
    t_in = np.arange(22050) / 22050
    out = resample(np.sin(2 * np.pi * 1000 * t_in), 22050, 16000)
    t_out = np.arange(16000) / 16000
    np.testing.assert_allclose(out, np.sin(2 * np.pi * 1000 * t_out), atol=1e-9)


def test_normalisation_stats():
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 2.0, (50, 10, 4)).astype(np.float32)
    mean, std = normalisation_stats(x)
    z = normalise(x, mean, std).reshape(-1, 4)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=0), 1, atol=1e-4)


# ---------------------------------------------------------------------------------- corpus (no espeak)

def test_dedup_keeps_first_of_identical_audio():
    hashes = [("a", "h1"), ("a+caleb", "h2"), ("a+klatt", "h2"), ("a+klatt6", "h2"), ("a+m1", "h3"), ("a+bad", None)]
    kept, duplicates, failed, by_hash = voices.dedup_by_hash(hashes)
    assert kept == ["a", "a+caleb", "a+m1"]
    assert duplicates == {"a+caleb": ["a+klatt", "a+klatt6"]}
    assert failed == ["a+bad"]


def test_variant_groups_merge_duplicates_but_ignore_no_op_variants():
    by_hash = {"h1": ["acc+caleb", "acc+klatt"], "h2": ["other+klatt", "other+klatt6"],
               "h3": ["acc", "acc+fast", "acc+m1"]}  # variants identical to the default say nothing
    groups = voices.group_variants(by_hash, ["default", "caleb", "klatt", "klatt6", "m1", "fast"])
    assert ("caleb", "klatt", "klatt6") in groups
    assert ("m1",) in groups and ("default",) in groups and ("fast",) in groups


def test_split_by_voice_never_shares_a_variant():
    groups = [(f"v{k}",) for k in range(30)] + [("caleb", "klatt", "klatt6")]
    splits = voices.split_groups(groups, 0.1, 0.1, seed=3)
    names = {s: {v for g in gs for v in g} for s, gs in splits.items()}
    assert not names["train"] & names["val"] and not names["train"] & names["test"] and not names["val"] & names["test"]
    assert set().union(*names.values()) == {v for g in groups for v in g}
    assert len(splits["test"]) == 3 and len(splits["val"]) == 3
    inventory = voices.VoiceInventory(tuple(f"gmw/en+v{k}" for k in range(30)) + ("gmw/en-US+caleb",), {},
                                      tuple(groups), ())
    by_split = {s: set(voices.voices_of_split(inventory, gs)) for s, gs in splits.items()}
    assert sum(len(v) for v in by_split.values()) == 31 and not by_split["train"] & by_split["test"]


def test_plan_is_balanced_and_uses_only_the_split_voices():
    config = corpus.CorpusConfig(task="digits", train_per_word=7, val_per_word=2, test_per_word=3)
    voices = {"train": ["a", "b", "c"], "val": ["d"], "test": ["e", "f"]}
    specs = corpus.plan_utterances(config, voices)
    assert len(specs) == 10 * (7 + 2 + 3)
    assert [s.index for s in specs] == list(range(len(specs)))
    for split in corpus.SPLITS:
        mine = [s for s in specs if s.split == split]
        assert {s.voice for s in mine} <= set(voices[split])
        assert np.all(np.bincount([s.label for s in mine]) == config.per_word(split))


def test_mixing_reaches_the_requested_snr():
    rng = np.random.default_rng(0)
    word = np.sin(np.arange(4000) * 0.1)
    noise = rng.standard_normal(16000)
    mixed = corpus.place_and_mix(word, 16000, 5000, noise, snr_db=7.0)
    added = mixed.copy()
    added[5000:9000] -= word
    snr = 10 * np.log10(np.mean(word ** 2) / np.mean(added ** 2))
    assert snr == pytest.approx(7.0, abs=1e-9)
    clean = corpus.place_and_mix(word, 16000, 5000, None, 0.0)
    assert np.all(clean[:5000] == 0) and np.array_equal(clean[5000:9000], word)


def test_pink_noise_has_a_1_over_f_spectrum():
    power = np.abs(np.fft.rfft(corpus.pink_noise(1 << 16, np.random.default_rng(0)))) ** 2
    freqs = np.arange(len(power))
    octave = lambda lo: power[lo:2 * lo].mean()  # noqa: E731
    ratios = [octave(lo) / octave(2 * lo) for lo in (64, 256, 1024, 4096)]
    np.testing.assert_allclose(ratios, 2.0, rtol=0.15)  # 1/f: each octave up carries half the power density
    assert freqs.size


def test_trim_silence():
    audio = np.concatenate([np.zeros(1000), 0.5 * np.ones(300), np.zeros(1000)])
    trimmed = corpus.trim_silence(audio, 16000, margin_s=0.001)
    assert len(trimmed) == 300 + 2 * 16 and trimmed.max() == 0.5


def test_unknown_task_is_a_clear_error():
    with pytest.raises(corpus.CorpusError, match="unknown task"):
        corpus.CorpusConfig(task="numbers")


def test_vocabularies():
    assert len(corpus.DIGITS) == 10 and len(corpus.SPEECH_COMMANDS) == 35
    assert not set(corpus.BABBLE_WORDS) & set(corpus.SPEECH_COMMANDS)


# ------------------------------------------------------------------------------- corpus (espeak-ng)

@needs_espeak
def test_espeak_voices_and_variant_selection():
    accents = voices.list_accents()
    assert "gmw/en-US" in accents and len(accents) >= 8
    assert {"klatt", "caleb", "m1"} <= set(voices.list_variants())
    # The voice file (not the language code) must be used, or variants are silently ignored.
    assert voices.espeak_pcm("seven", "gmw/en+klatt")[0] != voices.espeak_pcm("seven", "gmw/en")[0]


@needs_espeak
def test_tiny_corpus_dedups_and_splits_by_voice(tmp_path):
    variants = ["default", "caleb", "klatt", "klatt6", "m1", "m3", "f1", "f2", "croak", "whisper"]
    inventory = voices.build_inventory(progress=False, accents=["gmw/en-US", "gmw/en-GB-scotland"], variants=variants)
    for accent in ("gmw/en-US", "gmw/en-GB-scotland"):  # caleb, klatt and klatt6 sound the same
        assert set(inventory.duplicates[f"{accent}+caleb"]) == {f"{accent}+klatt", f"{accent}+klatt6"}
    assert ("caleb", "klatt", "klatt6") in inventory.groups
    config = corpus.CorpusConfig(task="digits", train_per_word=2, val_per_word=1, test_per_word=1,
                                 babble_pool_per_split=3, val_fraction=0.2, test_fraction=0.2)
    manifest = corpus.build_corpus(config, tmp_path, progress=False, inventory=inventory)
    assert manifest["counts"] == {"train": 20, "val": 10, "test": 10}
    task = Task.load(tmp_path)
    variants_of = {s: {voices.split_voice_id(str(v))[1] for v in task.split(s).metadata["voices"]}
                   for s in corpus.SPLITS}
    assert not variants_of["train"] & variants_of["test"] and not variants_of["train"] & variants_of["val"]
    assert not variants_of["val"] & variants_of["test"]
    test = task.split("test")
    assert test.features.shape == (10, 49, 80) and np.all(np.isfinite(test.features))
    assert set(test.metadata["noise"]) <= {"white", "pink", "babble"}
    assert np.all((test.metadata["snr_db"] >= 0) & (test.metadata["snr_db"] <= 20))
    # Reproducible whatever the number of worker processes.
    corpus.build_corpus(config, tmp_path / "two-workers", workers=2, progress=False, inventory=inventory)
    again = Task.load(tmp_path / "two-workers")
    for split in corpus.SPLITS:
        np.testing.assert_array_equal(again.split(split).features, task.split(split).features)
    # Reproducible: the same seed gives the same audio, independent of anything else.
    spec = corpus.plan_utterances(config, manifest["voices"])[0]
    a1, m1 = corpus.render_utterance(spec, config, [np.ones(100)])
    a2, m2 = corpus.render_utterance(spec, config, [np.ones(100)])
    assert np.array_equal(a1, a2) and m1 == m2


# --------------------------------------------------------------------------------------------- task

def test_task_score_and_feature_set_round_trip(tmp_path):
    task = synthetic_task(num_classes=4, per_class=8)
    test = task.split("test")
    assert task.score(lambda x: np.eye(4)[test.labels[:len(x)]] if len(x) == len(test) else None) == 1.0
    assert task.score(lambda x: np.zeros(len(x), dtype=np.int64)) == pytest.approx(0.25)
    test.save(tmp_path / "t.npz")
    loaded = Task.load(tmp_path / "t.npz")
    assert list(loaded.splits) == ["test"] and loaded.vocabulary == task.vocabulary
    np.testing.assert_array_equal(loaded.split("test").labels, test.labels)
    subset = test.balanced_subset(2)
    assert np.all(np.bincount(subset.labels) == 2)
    with pytest.raises(TaskError, match="no 'train' split"):
        loaded.split("train")
    with pytest.raises(TaskError, match="no such"):
        Task.load(tmp_path / "missing")


def test_classifier_head_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    head = ClassifierHead(rng.normal(size=3), rng.uniform(1, 2, 3), rng.normal(size=(2, 5)), rng.normal(size=2),
                          ("yes", "no"))
    head.save(tmp_path / "h.npz")
    loaded = ClassifierHead.load(tmp_path / "h.npz")
    y = rng.normal(size=(4, 7, 5))
    np.testing.assert_allclose(loaded.scores(y), y.mean(axis=1) @ head.weight.T + head.bias)
    assert loaded.vocabulary == ("yes", "no")


# --------------------------------------------------------------------------------- shipped artefacts

SHIPPED_TEST_SETS = sorted(MODELS.glob("*-test.npz"))


@pytest.mark.parametrize("path", SHIPPED_TEST_SETS, ids=lambda p: p.name)
def test_shipped_test_sets_are_well_formed(path):
    data = FeatureSet.load(path)
    assert data.features.shape[1:] == (49, 80)
    assert np.all(np.isfinite(data.features))
    counts = np.bincount(data.labels, minlength=len(data.vocabulary))
    assert np.all(counts == counts[0]) and counts[0] >= 10


def _shipped_models():
    index = MODELS / "models.json"
    return json.loads(index.read_text())["models"] if index.exists() else []


@pytest.mark.parametrize("entry", _shipped_models(), ids=lambda e: e["checkpoint"])
def test_shipped_models_reach_their_recorded_accuracy_without_torch(entry):
    """The NumPy path (load_model + reference_forward + head .npz) reproduces the recorded accuracy."""
    from sparselstm.sw.loaders import load_model
    from sparselstm.sw.reference import reference_forward

    lstm = load_model(MODELS / entry["lstm_npz"])  # the .npz export: no PyTorch needed
    head = ClassifierHead.load(MODELS / entry["head"])
    task = Task.load(MODELS / entry["test_set"])
    accuracy = task.score(head.predict_fn(lambda x: reference_forward(lstm, x)), batch_size=100)
    assert accuracy == pytest.approx(entry["test_set_accuracy"], abs=1e-9)


@pytest.mark.parametrize("entry", [e for e in _shipped_models() if "compressed_test_set_golden_accuracy" in e],
                         ids=lambda e: e.get("compressed", e["checkpoint"]))
def test_shipped_compressed_models_reach_their_recorded_golden_accuracy(entry):
    """`sparselstm accuracy` (make accuracy) on a shipped compressed model: the bit-exact golden model of
    its encoding reproduces the accuracy models.json records, at the density it records."""
    from sparselstm.sw.compress.accuracy import evaluate_entry

    result = evaluate_entry(MODELS, entry, n_pes=16)
    assert result["compressed"] is not None, "a fine-tuned compressed model must be shipped"
    assert result["compressed_golden_accuracy"] == pytest.approx(entry["compressed_test_set_golden_accuracy"],
                                                                 abs=1e-9)
    assert result["overall_density"] == pytest.approx(entry["compressed_overall_density"], abs=1e-9)
    assert result["overall_density"] <= 0.1


# ------------------------------------------------------------------------------------------- commands

def test_data_command_without_espeak_is_one_clear_error(tmp_path, monkeypatch, capsys):
    from sparselstm.cli import main

    monkeypatch.setattr(voices.shutil, "which", lambda name: None)
    assert main(["data", "--task", "digits", "-o", str(tmp_path / "c"), "-q"]) == 1
    assert "apt-get install espeak-ng" in capsys.readouterr().err


def test_data_command_subset(tmp_path, capsys):
    from sparselstm.cli import main

    task = synthetic_task(num_classes=3, per_class=40)
    for name, split in task.splits.items():
        split.save(tmp_path / f"{name}.npz")
    assert main(["data", "--subset-of", str(tmp_path), "--per-class", "4", "-o", str(tmp_path / "s.npz")]) == 0
    subset = FeatureSet.load(tmp_path / "s.npz")
    assert np.all(np.bincount(subset.labels) == 4)
    assert main(["data", "--subset-of", str(tmp_path), "-o", str(tmp_path / "s")]) == 1  # must be a .npz


@needs_espeak
@pytest.mark.slow
def test_data_command_small_digits(tmp_path):
    """The CI-sized corpus, end to end (about a minute on one core)."""
    from sparselstm.cli import main

    assert main(["data", "--task", "digits", "--size", "small", "-o", str(tmp_path), "-q"]) == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["counts"] == {"train": 1000, "val": 200, "test": 200}
    voices = {s: set(v) for s, v in manifest["voices"].items()}
    assert not voices["train"] & voices["test"] and len(voices["train"]) > 400
    assert Task.load(tmp_path).split("train").features.shape == (1000, 49, 80)


# --------------------------------------------------------------------------------- utterance samples


def _sample_parts(rng, vocabulary=("yes", "no", "up")):
    features = FeatureSet(rng.normal(size=(9, 4, 3)).astype(np.float32), np.arange(9) % 3, vocabulary)
    head = ClassifierHead(rng.normal(size=3), rng.uniform(1, 2, 3), rng.normal(size=(3, 2)), np.zeros(3),
                          vocabulary)
    return features, head


def test_utterance_sample_picks_evenly_and_classifies():
    from sparselstm.sw.speech.utterances import UtteranceSample

    rng = np.random.default_rng(0)
    features, head = _sample_parts(rng)
    sample = UtteranceSample(head, features, 3, lstm_size=(3, 2))
    assert sample.picks.tolist() == [0, 4, 8] and sample.labels.tolist() == [0, 1, 2]
    np.testing.assert_allclose(sample.inputs, (features.features[[0, 4, 8]] - head.mean) / head.std)
    outputs = rng.normal(size=(3, 4, 2))
    floats = rng.normal(size=(3, 4, 2))
    result = sample.classify(outputs, floats, "dense.npz")
    expected = (outputs.mean(axis=1) @ head.weight.T).argmax(axis=1)
    assert result["accelerator_predictions"] == expected.tolist()
    assert result["accelerator_accuracy"] == np.mean(expected == [0, 1, 2])
    assert result["float_model"] == "dense.npz"
    lines = sample.format_classification(result)
    assert len(lines) == 5 and lines[1].split()[:2] == ["0", "yes"] and "% correct" in lines[-1]
    assert "float model" not in "\n".join(sample.format_classification(sample.classify(outputs)))


def test_utterance_sample_rejects_what_does_not_fit_the_lstm():
    from sparselstm.spec.errors import ParameterError
    from sparselstm.sw.speech.utterances import UtteranceSample

    rng = np.random.default_rng(1)
    features, head = _sample_parts(rng)
    with pytest.raises(ParameterError, match="the LSTM takes 5"):
        UtteranceSample(head, features, 3, lstm_size=(5, 2))
    with pytest.raises(ParameterError, match="takes 2 LSTM outputs, but the LSTM gives 4"):
        UtteranceSample(head, features, 3, lstm_size=(3, 4))
    with pytest.raises(ParameterError, match="count must be at least 1"):
        UtteranceSample(head, features, 0, lstm_size=(3, 2))
    with pytest.raises(TypeError, match="count"):
        UtteranceSample(head, features, 2.5, lstm_size=(3, 2))
    with pytest.raises(ParameterError, match="vocabulary"):
        UtteranceSample(_sample_parts(rng, ("a", "b", "c"))[1], features, 3, lstm_size=(3, 2))
