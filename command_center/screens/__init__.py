"""The screen hub: wall displays and consoles subscribe over one WebSocket (docs/protocols.md)."""
