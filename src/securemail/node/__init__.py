"""The gateway node: its configuration, its services, and running them together."""
