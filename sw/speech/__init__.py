"""The speech task sparselstm builds itself: synthesised words, log-mel features, split by voice."""
