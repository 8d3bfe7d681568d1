"""scoresvc: an influence-score service that favours, rings and volume cannot buy."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("scoresvc")
except PackageNotFoundError:  # a source tree on sys.path, not installed
    __version__ = "0+unknown"
