"""The node's configuration: the TOML file read and validated into frozen values.

Every part of a node reads its settings from here; nothing here opens a key, a socket or
a database. Mistakes are ConfigError (reason ``bad-config``) naming the key.
"""
