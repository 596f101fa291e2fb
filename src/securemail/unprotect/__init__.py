"""Unprotect: the inbound service that opens, checks, marks and delivers peer mail."""
