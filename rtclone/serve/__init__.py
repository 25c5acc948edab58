"""The rtclone WebSocket server: protocol, sessions, voice registry, metrics and the browser page."""
