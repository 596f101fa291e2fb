"""The SMTP client's wire, shared by the relay (to peers) and delivery (to stores): remote
replies as Reply values, arguments that are safe to send, and client TLS for ordinary
servers. Below both users; it opens no connection itself."""
