"""Log-mel features in NumPy: framing, Hann window, power spectrum, mel filterbank, log, frame stacking.

The defaults are the usual speech front end (16 kHz, 25 ms windows every 10 ms, 512-point FFT, 40 HTK mel
bands from 20 Hz to 8 kHz). Pairs of consecutive frames are then stacked into one 80-wide vector with a
stride of 2 ("low frame rate"): a 1 s utterance becomes 49 steps instead of 98, which halves the work the
LSTM and the accelerator do per utterance without losing spectral detail.

Normalisation (per-feature mean and standard deviation of the training split) is *not* applied here: the
statistics belong to the trained model and are saved with it (see sw/train.py and ClassifierHead).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ...spec.errors import ParameterError


@dataclass(frozen=True)
class FeatureConfig:
    sample_rate: int = 16000
    window_ms: float = 25.0
    hop_ms: float = 10.0
    fft_size: int = 512
    mel_bands: int = 40
    fmin_hz: float = 20.0
    fmax_hz: float = 8000.0
    stack: int = 2          # consecutive frames concatenated into one step (stride = stack)
    log_floor: float = 1e-10  # added before the log so silence (exact zeros) stays finite

    def __post_init__(self):
        if self.frame_length > self.fft_size:
            raise ParameterError(f"window of {self.frame_length} samples does not fit the {self.fft_size}-point FFT")
        if not 0 <= self.fmin_hz < self.fmax_hz <= self.sample_rate / 2:
            raise ParameterError(f"mel range {self.fmin_hz}-{self.fmax_hz} Hz must lie within "
                                 f"0-{self.sample_rate / 2} Hz")
        if self.mel_bands < 1 or self.stack < 1 or self.hop_length < 1:
            raise ParameterError("mel_bands, stack and the hop must be at least 1")

    @property
    def frame_length(self) -> int:
        return int(round(self.sample_rate * self.window_ms / 1000))

    @property
    def hop_length(self) -> int:
        return int(round(self.sample_rate * self.hop_ms / 1000))

    @property
    def feature_size(self) -> int:
        """Width of one stacked step: the LSTM's input size."""
        return self.mel_bands * self.stack

    def frames(self, samples: int) -> int:
        """Number of (unstacked) analysis frames in a signal of `samples` samples."""
        return 0 if samples < self.frame_length else 1 + (samples - self.frame_length) // self.hop_length

    def steps(self, samples: int) -> int:
        """Number of stacked steps (LSTM time steps) for a signal of `samples` samples."""
        return self.frames(samples) // self.stack

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureConfig":
        return cls(**d)


def hz_to_mel(hz):
    """HTK mel scale."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(config: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """(mel_bands, fft_size // 2 + 1) triangular filters, equally spaced on the mel scale, peak 1.

    The triangles are evaluated at each FFT bin's exact frequency (not snapped to bins), so the narrow
    low-frequency bands never come out empty.
    """
    edges_hz = mel_to_hz(np.linspace(hz_to_mel(config.fmin_hz), hz_to_mel(config.fmax_hz), config.mel_bands + 2))
    bin_hz = np.arange(config.fft_size // 2 + 1) * config.sample_rate / config.fft_size
    left, centre, right = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (bin_hz - left) / (centre - left)
    falling = (right - bin_hz) / (right - centre)
    return np.maximum(0.0, np.minimum(rising, falling))


def frame_signal(signal: np.ndarray, frame_length: int, hop_length: int) -> np.ndarray:
    """(..., samples) -> (..., frames, frame_length) views; trailing samples that do not fill a frame are dropped."""
    signal = np.asarray(signal)
    n_frames = 0 if signal.shape[-1] < frame_length else 1 + (signal.shape[-1] - frame_length) // hop_length
    windows = np.lib.stride_tricks.sliding_window_view(signal, frame_length, axis=-1)
    return windows[..., : (n_frames - 1) * hop_length + 1 : hop_length, :]


def hann_window(length: int) -> np.ndarray:
    """Periodic Hann window (the spectral-analysis convention)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)


def log_mel(audio: np.ndarray, config: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """(..., samples) float audio -> (..., frames, mel_bands) natural-log mel power."""
    frames = frame_signal(np.asarray(audio, dtype=np.float64), config.frame_length, config.hop_length)
    spectrum = np.fft.rfft(frames * hann_window(config.frame_length), n=config.fft_size, axis=-1)
    power = spectrum.real ** 2 + spectrum.imag ** 2
    return np.log(power @ mel_filterbank(config).T + config.log_floor)


def stack_frames(features: np.ndarray, stack: int) -> np.ndarray:
    """(..., frames, bands) -> (..., frames // stack, bands * stack): frames [k*stack, (k+1)*stack) side by side,
    oldest first. A last incomplete group is dropped."""
    steps = features.shape[-2] // stack
    kept = features[..., : steps * stack, :]
    return kept.reshape(*features.shape[:-2], steps, stack * features.shape[-1])


def compute_features(audio: np.ndarray, config: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """(..., samples) audio at config.sample_rate -> (..., steps, feature_size) float32 stacked log-mel."""
    return stack_frames(log_mel(audio, config), config.stack).astype(np.float32)


def normalisation_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation over all utterances and steps of (N, T, F) features."""
    flat = np.asarray(features, dtype=np.float64).reshape(-1, features.shape[-1])
    mean = flat.mean(axis=0)
    std = np.maximum(flat.std(axis=0), 1e-3)  # a constant feature must not blow up
    return mean.astype(np.float32), std.astype(np.float32)


def normalise(features: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return ((np.asarray(features, dtype=np.float32) - mean) / std).astype(np.float32)


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Band-limited resampling by FFT (zero-padding or truncating the spectrum); exact for periodic signals
    and adequate for short, silence-padded clips such as single synthesised words."""
    audio = np.asarray(audio, dtype=np.float64)
    if from_rate == to_rate:
        return audio.copy()
    n_in = audio.shape[-1]
    n_out = int(round(n_in * to_rate / from_rate))
    spectrum = np.fft.rfft(audio)
    kept = min(spectrum.shape[-1], n_out // 2 + 1)
    out_spectrum = np.zeros(n_out // 2 + 1, dtype=complex)
    out_spectrum[:kept] = spectrum[:kept]
    return np.fft.irfft(out_spectrum, n=n_out) * (n_out / n_in)
