"""Software side: model import, float reference, pruning, quantisation, encoder, golden model."""
