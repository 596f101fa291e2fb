"""The upstream queue: a node that holds other members' ciphertext while their gateways are away."""
