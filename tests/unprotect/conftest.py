"""The unprotect tests run against the demo federation of tests/node (real nodes on loopback)."""

from tests.node.conftest import federation, founded

__all__ = ["federation", "founded"]
