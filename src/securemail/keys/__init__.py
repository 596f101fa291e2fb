"""Custody of a node's private keys: split-knowledge backup and restore, PKCS#12 export."""
