"""The contact register: addresses an organisation verified with their holder's provider."""
