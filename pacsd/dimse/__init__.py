"""Thin DIMSE adapters, one module per service: read the request, call the
domain, answer with statuses from one table (:mod:`pacsd.wire.statuses`)."""
