"""User-facing errors. The CLI prints them as one line and exits non-zero; everything else is a bug."""


class SparseLSTMError(ValueError):
    """Base class: bad input from the user (a file, a parameter), never an internal fault."""


class ModelError(SparseLSTMError):
    """A model description is inconsistent (shapes, non-finite values, unsupported features)."""


class LoadError(SparseLSTMError):
    """A file could not be read as a model; the message names the file, the key and what was expected."""


class EncodedModelError(SparseLSTMError):
    """An encoded model directory is missing files, inconsistent, or corrupted (checksums)."""


class ParameterError(SparseLSTMError):
    """A parameter (density, widths, PE count, ...) is outside its valid range."""
