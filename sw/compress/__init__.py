"""The compression method: sensitivity analysis, density choice, iterative load-balanced pruning with masked
fine-tuning, quantised evaluation, and delta mode (fine-tuning with thresholds, its work per frame)."""
