"""Realtime API: protocol dialects, the WebSocket client, auth, the embedded agent."""
