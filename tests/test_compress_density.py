"""Density choice from sensitivity curves: the rules, the fit to a target overall density, the bounds,
and the curves' JSON round trip. Curves are written by hand here, so every expected number is known."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sparselstm.sw.compress.density import (Allocation, allocate, density_at_loss, fit_to_target, knee_density,
                                            monotone_loss, overall_density, uniform_allocation, weighted_density)
from sparselstm.sw.compress.sensitivity import SensitivityCurves
from sparselstm.spec.errors import ParameterError
from sparselstm.sw.model import random_model
from sparselstm.sw.pruning import prune_model

DENSITIES = (0.05, 0.1, 0.2, 0.4, 0.8)


def make_curves(losses: dict[str, list[float]], sizes: dict[str, int] | None = None) -> SensitivityCurves:
    baseline = 0.9
    scores = {name: [baseline - v for v in values] for name, values in losses.items()}
    sizes = sizes or {name: 1000 for name in losses}
    return SensitivityCurves(DENSITIES, baseline, scores, sizes, n_pes=4, balanced=True, metric="accuracy")


@pytest.fixture
def curves() -> SensitivityCurves:
    return make_curves({
        "L0.input.i": [0.30, 0.10, 0.02, 0.00, 0.00],      # sensitive below 0.2
        "L0.recurrent.i": [0.02, 0.01, 0.00, 0.00, 0.00],  # tolerant
        "L0.proj": [0.60, 0.40, 0.20, 0.05, 0.00],         # the most sensitive
    }, sizes={"L0.input.i": 2000, "L0.recurrent.i": 1000, "L0.proj": 500})


def test_monotone_envelope_removes_noise_and_ends_dense():
    c = make_curves({"m": [0.1, 0.12, -0.01, 0.03, 0.0]})
    d, e = monotone_loss(c, "m")
    assert list(d) == [*DENSITIES, 1.0]
    # Running maximum from the dense end: a bump at 0.4 makes every sparser point at least as bad.
    np.testing.assert_allclose(e, [0.12, 0.12, 0.03, 0.03, 0.0, 0.0])
    assert np.all(np.diff(e) <= 0)


def test_density_at_loss_interpolates_and_stops_at_the_measured_range():
    d = np.array([0.1, 0.2, 1.0])
    e = np.array([0.4, 0.2, 0.0])
    assert density_at_loss(d, e, 0.3) == pytest.approx(0.15)
    assert density_at_loss(d, e, 0.2) == pytest.approx(0.2)
    assert density_at_loss(d, e, 0.5) == pytest.approx(0.1)   # never below the lowest measured density
    assert density_at_loss(d, e, 0.0) == pytest.approx(1.0)


def test_knee_of_an_l_shaped_curve_is_where_it_bends():
    d = np.array([0.05, 0.1, 0.2, 0.4, 0.8, 1.0])
    e = np.array([0.5, 0.2, 0.02, 0.01, 0.0, 0.0])
    assert knee_density(d, e) == pytest.approx(0.2)
    assert knee_density(d, np.zeros(6)) == pytest.approx(0.05)  # a flat curve: prune as far as measured


@pytest.mark.parametrize("rule", ["threshold", "knee"])
@pytest.mark.parametrize("target", [0.08, 0.1, 0.25, 0.6])
def test_allocation_meets_the_target_and_respects_bounds(curves, rule, target):
    allocation = allocate(curves, target, rule, min_density=0.02, max_density=0.9)
    assert allocation.overall == pytest.approx(target, abs=1e-9)
    assert weighted_density(allocation.densities, curves.sizes) == pytest.approx(target, abs=1e-9)
    assert all(0.02 <= d <= 0.9 for d in allocation.densities.values())
    # A sensitive matrix keeps at least as much as a tolerant one.
    assert (allocation.densities["L0.proj"] >= allocation.densities["L0.input.i"]
            >= allocation.densities["L0.recurrent.i"])


def test_threshold_rule_finds_the_common_loss(curves):
    allocation = allocate(curves, 0.25, "threshold", min_density=0.0)
    # At the threshold every matrix sits where its own (monotone) loss equals it, unless clamped.
    for name, density in allocation.shape.items():
        d, e = monotone_loss(curves, name)
        assert np.interp(density, d, e) <= allocation.threshold + 1e-9
    assert allocation.scale >= 1.0 - 1e-9    # the common threshold alone cannot overshoot the target
    json.dumps(allocation.to_dict())


def test_fit_to_target_clips_and_refuses_impossible_targets():
    sizes = {"a": 100, "b": 100}
    densities, scale = fit_to_target({"a": 0.1, "b": 0.5}, sizes, 0.5, max_density=0.6)
    assert densities["b"] == pytest.approx(0.6) and densities["a"] == pytest.approx(0.4)
    with pytest.raises(ParameterError, match="outside what the per-matrix bounds allow"):
        fit_to_target({"a": 0.1, "b": 0.5}, sizes, 0.05, min_density=0.1)
    with pytest.raises(ParameterError, match="target density must be in"):
        fit_to_target({"a": 0.1, "b": 0.5}, sizes, 1.5)
    with pytest.raises(ParameterError, match="unknown matrix"):
        fit_to_target({"a": 0.1, "b": 0.5}, sizes, 0.3, min_density={"c": 0.1})


def test_uniform_allocation_and_overall_density_of_a_pruned_model(small_model):
    sizes = {name: w.size for name, w in small_model.matrices().items()}
    allocation = uniform_allocation(sizes, 0.3)
    assert isinstance(allocation, Allocation) and set(allocation.densities.values()) == {0.3}
    pruned, masks = prune_model(small_model, allocation.densities, n_pes=1, balanced=False)
    expected = sum(int(m.sum()) for m in masks.values()) / sum(sizes.values())
    assert overall_density(pruned) == pytest.approx(expected)
    assert abs(overall_density(pruned) - 0.3) < 0.05   # whole weights per matrix


def test_bad_rule_and_target(curves):
    with pytest.raises(ParameterError, match="density rule"):
        allocate(curves, 0.1, "elbow")
    for bad in (0.0, -0.1, float("nan"), "0.1", True):
        with pytest.raises(ParameterError):
            allocate(curves, bad)


def test_curves_json_round_trip_and_model_check(curves, tmp_path):
    path = curves.save(tmp_path / "s" / "sensitivity.json")
    loaded = SensitivityCurves.load(tmp_path / "s")
    assert loaded.to_dict() == curves.to_dict()
    with pytest.raises(ParameterError, match="another model"):
        loaded.check_model(random_model(3, 4, 2))
    path.write_text(json.dumps({**curves.to_dict(), "scores": {"L0.proj": [0.1]}}))
    with pytest.raises(ParameterError, match="one score per density"):
        SensitivityCurves.load(path)
    path.write_text("{}")
    with pytest.raises(ParameterError, match="not a sensitivity file"):
        SensitivityCurves.load(path)
    with pytest.raises(ParameterError, match="not found"):
        SensitivityCurves.load(tmp_path / "missing.json")
