"""Exceptions for input a user can fix.

Every error raised for bad input derives from :class:`DDMError`; the command
line prints its message as one line on stderr and exits with status 2.
"""


class DDMError(Exception):
    """Base class for errors caused by user input (files, options, specs)."""


class SpecError(DDMError):
    """An SDE specification (TOML file, dict or callables) is invalid."""


class ModelFileError(DDMError):
    """A model file is missing, truncated, of an unknown version or not a model."""


class TrajectoryError(DDMError):
    """A trajectory file or array is malformed."""


class OutputExistsError(DDMError):
    """An output path exists and overwriting was not allowed."""
