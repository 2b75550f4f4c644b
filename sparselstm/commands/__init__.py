"""One module per `sparselstm` subcommand."""
