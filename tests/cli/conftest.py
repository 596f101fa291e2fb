"""The node federation fixtures, for the CLI tests of commands that operate a node."""

from tests.node.conftest import federation, founded

__all__ = ["federation", "founded"]
