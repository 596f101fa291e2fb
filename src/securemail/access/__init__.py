"""Who may use the web and the API: the operator role, API tokens, browser sessions.

Below the web (which checks them on every request) and the CLI (which grants and revokes
them); the rows live in the node database (securemail.storage) beside the accounts.
"""
