"""The caching proxy ("virtual server"): pacsd in front of upstream PACSs.

- C-FIND is answered from the local index and every upstream, merged; what
  an upstream says never becomes a row (:mod:`pacsd.upstream.query`).
- C-MOVE/C-GET of a study that is not local first fetches it whole from an
  upstream into a staging area, then commits all of its rows in one
  transaction, or none (:mod:`pacsd.upstream.fetch`,
  :mod:`pacsd.upstream.staging`).
- Upstreams are spoken to over :mod:`pacsd.wire` (:mod:`pacsd.upstream.session`).
"""
