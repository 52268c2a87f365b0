"""Thin DIMSE adapters, one module per service: decode the request, call one
Archive method, answer with statuses from one table (:mod:`pacsd.wire.statuses`)."""
