"""The errors the engine raises for bad input.

Every message names what was wrong, the value given and what to do instead, so the CLI can
print it as one line and the dashboard can show it as is.
"""


class CompressionError(ValueError):
    """Base class: bad input that the user can fix (never a bug in the engine)."""


class RecipeError(CompressionError):
    """A recipe field has a value outside what the engine accepts."""


class ModelLoadError(CompressionError):
    """A model file or name that cannot be loaded."""


class UnsafeFileError(ModelLoadError):
    """A file that could only be loaded by running code it carries (arbitrary unpickling)."""


class DataError(CompressionError):
    """Evaluation data that does not fit the model (shape, labels, length)."""


class PackedFileError(CompressionError):
    """A packed file that is corrupt, truncated or not ours."""
