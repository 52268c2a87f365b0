"""Thin pynetdicom event handlers: translate DIMSE in and out, call the domain."""
