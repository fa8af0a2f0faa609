"""Servers over a workspace: `dropsited mcp` for AI clients, `dropsited web` for people.

Both are thin clients of the protocol library (every action is a DropSite call) and
need the optional `serve` extra; nothing outside this package imports it.
"""
