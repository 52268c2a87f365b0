"""pacsd: a DIMSE-native mini-PACS whose index cannot be corrupted."""

__version__ = "0.1.0"
