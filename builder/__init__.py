"""kdump-build: declarative, hermetic builder for Linux kdump capture images."""

__version__ = "0.1.0"
