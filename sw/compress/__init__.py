"""The compression method: sensitivity analysis, density choice, iterative load-balanced pruning with masked fine-tuning, quantised evaluation."""
