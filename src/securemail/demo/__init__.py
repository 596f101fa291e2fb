"""The demo federation: real nodes on loopback, scripted mail through them."""
