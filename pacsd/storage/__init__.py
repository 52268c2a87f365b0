"""Stored objects on disk: the file layout and durable writes, spare files,
and the syncer that flushes files whose bytes wait in the index."""
