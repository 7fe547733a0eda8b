"""The package version, also embedded in the compiled core."""

__version__ = "0.1.0"
