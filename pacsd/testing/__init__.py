"""Test tooling shared by the test suite and ``scripts/bench``: synthetic
objects, datasets as exact bytes, and peer processes."""
