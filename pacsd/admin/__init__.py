"""Operator commands that read or repair the archive."""
