"""The use cases, behind one façade (:class:`pacsd.services.archive.Archive`);
they reach the index, the files and the caching proxy only through
:mod:`pacsd.ports`."""
