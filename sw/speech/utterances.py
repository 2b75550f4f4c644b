"""A few utterances of a keyword classifier's feature set, run through some LSTM, and the word each is
classified as: what `sparselstm sim --features` shows beside the accelerator's words."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...spec.errors import ParameterError
from .task import ClassifierHead, FeatureSet


class UtteranceSample:
    """Utterances picked evenly from a feature set, normalised for the LSTM by a classifier head.

    Parameters
    ----------
    head : ClassifierHead
        Normalises the features and turns LSTM outputs (B, T, P) into class scores.
    features : FeatureSet
        Where the utterances come from; its vocabulary must be the head's.
    count : int
        How many utterances to pick (at most the set's size), spread evenly over the set: shipped test
        sets are sorted by word, so the first N would all be one word.
    lstm_size : tuple of int
        (input size, output size) of the LSTM the utterances are run through: the features' width and the
        head's must fit it.

    Attributes
    ----------
    picks : int array (N,)
        Indices of the utterances in the feature set.
    labels : int array (N,)
        Their true classes.
    inputs : float64 array (N, T, F)
        Their normalised features, the LSTM's input.
    """

    def __init__(self, head: ClassifierHead, features: FeatureSet, count: int, lstm_size: tuple[int, int]):
        if not isinstance(head, ClassifierHead):
            raise TypeError(f"head: expected a ClassifierHead, got {type(head).__name__}")
        if not isinstance(features, FeatureSet):
            raise TypeError(f"features: expected a FeatureSet, got {type(features).__name__}")
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)):
            raise TypeError(f"count: expected an integer, got {count!r}")
        if count < 1:
            raise ParameterError(f"count must be at least 1, got {count}")
        input_size, output_size = lstm_size
        if features.input_size != input_size or head.mean.shape != (input_size,):
            raise ParameterError(f"{features.input_size} features per frame and a head normalising "
                                 f"{head.mean.shape[0]}, but the LSTM takes {input_size}")
        if head.weight.shape[1] != output_size:
            raise ParameterError(f"the head's linear layer takes {head.weight.shape[1]} LSTM outputs, but the "
                                 f"LSTM gives {output_size}")
        if tuple(features.vocabulary) != tuple(head.vocabulary):
            raise ParameterError("the head's vocabulary differs from the feature set's")
        if len(features) == 0:
            raise ParameterError("the feature set holds no utterances")
        self.head, self.vocabulary = head, tuple(features.vocabulary)
        self.picks = np.unique(np.linspace(0, len(features) - 1, min(count, len(features))).round().astype(int))
        self.labels = features.labels[self.picks]
        self.inputs = head.normalise(features.features[self.picks])

    @classmethod
    def load(cls, features_path: Path, head_path: Path, count: int, lstm_size: tuple[int, int]) -> "UtteranceSample":
        """From a feature set .npz and a head .npz; errors name the file."""
        features, head = FeatureSet.load(features_path), ClassifierHead.load(head_path)
        try:
            return cls(head, features, count, lstm_size)
        except ParameterError as error:
            raise ParameterError(f"{features_path} with {head_path}: {error}") from None

    def predict(self, lstm_outputs: np.ndarray) -> np.ndarray:
        """The predicted class of every picked utterance from the LSTM's outputs (N, T, P)."""
        return self.head.scores(lstm_outputs).argmax(axis=-1)

    def classify(self, accelerator_outputs: np.ndarray, float_outputs: np.ndarray | None = None,
                 float_model: str | None = None) -> dict:
        """Predictions and accuracies from the accelerator's outputs and, if given, those of the float model
        named `float_model` (both (N, T, P)), as plain JSON types."""
        rtl = self.predict(accelerator_outputs)
        result = {"utterances": self.picks.tolist(), "labels": self.labels.tolist(),
                  "accelerator_predictions": rtl.tolist(),
                  "accelerator_accuracy": float(np.mean(rtl == self.labels))}
        if float_outputs is not None:
            floating = self.predict(float_outputs)
            result.update({"float_model": float_model, "float_predictions": floating.tolist(),
                           "float_accuracy": float(np.mean(floating == self.labels)),
                           "agreement_with_float": float(np.mean(floating == rtl))})
        return result

    def format_classification(self, result: dict) -> list[str]:
        """The lines of a `classify` result: one per utterance (true word, predicted words), then accuracy."""
        word = self.vocabulary.__getitem__
        floating = result.get("float_predictions")
        lines = [f"  {'utterance':>9}  {'word':<8} {'accelerator':<12} {'float model' if floating is not None else ''}"]
        for k, index in enumerate(self.picks):
            predicted = result["accelerator_predictions"][k]
            mark = "" if predicted == self.labels[k] else "  (wrong)"
            fl = f"{word(floating[k]):<12}" if floating is not None else ""
            lines.append(f"  {index:>9}  {word(self.labels[k]):<8} {word(predicted):<12} {fl}{mark}")
        line = f"  accelerator: {100 * result['accelerator_accuracy']:.1f} % correct"
        if floating is not None:
            line += (f"; float model: {100 * result['float_accuracy']:.1f} % correct; the two agree on "
                     f"{100 * result['agreement_with_float']:.1f} % of the utterances")
        lines.append(line)
        return lines
