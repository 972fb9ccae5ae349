"""polarnet's version, in a module of its own so that any layer can read it without importing
the package top (which re-exports the layers above it). ``pyproject.toml`` states the same
number (tests/test_package.py checks that they agree).

Example:
    >>> from polarnet._version import __version__
    >>> __version__.count(".")
    2
"""

__version__ = "0.1.0"
