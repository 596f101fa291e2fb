"""Policy: pure decisions (directory, settings, message facts in; decision and reason out)."""
