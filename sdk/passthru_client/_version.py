"""The SDK's version, read by its packaging and sent in its User-Agent."""

__version__ = "0.1.0"
