"""The HTTP adapter: a Starlette app over the Archive (DESIGN.md, "HTTP").

Like the DIMSE adapters it translates only: decode the request, call one
Archive method off the event loop, map its outcome or exception through
its own status table (:mod:`pacsd.web.statuses`), encode the answer.
"""
