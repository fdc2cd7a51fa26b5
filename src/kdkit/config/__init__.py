"""Configuration pieces shared by every family: strict field types, the strict YAML reader, options chosen by
name (the registries of sources and schemes build on it), keyword arguments checked against type hints, command-line
overrides and device names. The bottom layer above kdkit.errors: it imports no other kdkit package but kdkit.io.
"""
