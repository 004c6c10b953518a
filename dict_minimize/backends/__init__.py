"""Framework adapters: each module implements :class:`~._protocol.Backend` for one framework.

Importing this package imports no framework; each backend module imports only its own.
"""
