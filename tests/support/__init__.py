"""Test support: real peers (private Postfix instances) that tests and benchmarks run."""
