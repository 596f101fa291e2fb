"""Issuing certificates and CRLs for SecureMail federations, demos and tests."""
