"""Realtime API, client side: protocol dialects, the WebSocket client and link, auth.

The embedded agent (the server side, for tests and the echo line) is :mod:`gateway.agent`.
"""
