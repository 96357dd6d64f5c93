"""Simulated field units: street-grid routes around a city and a fleet of units that drive the reference
client (``field_device``) over the real transports."""
