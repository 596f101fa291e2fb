"""Protect: the outbound service that signs, encrypts and hands mail to the relay."""
