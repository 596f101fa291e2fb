"""The web face of a node: webmail for mailbox holders, the operator console, the JSON API."""
