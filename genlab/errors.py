"""User-facing errors: one clear paragraph saying what was wrong, where, and what to do.

The CLI prints these without a traceback; anything else that escapes is a bug in genlab.
"""

from __future__ import annotations


class GenlabError(Exception):
    """A mistake the user can fix (bad config, missing data or weights, unusable run directory)."""


class ConfigError(GenlabError):
    """The configuration (YAML file or `key=value` override) is invalid."""


class DataError(GenlabError):
    """A data set is missing, unreadable or does not fit the configuration."""


class DataNotFoundError(DataError):
    """A data set's files are not where genlab looks (downloading them may help)."""


class CheckpointError(GenlabError):
    """A checkpoint or run directory is missing, corrupt or incompatible."""


class NotSupportedYet(GenlabError):
    """A declared configuration value whose implementation has not landed yet."""
