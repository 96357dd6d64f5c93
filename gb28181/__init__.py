"""The GB/T 28181 device edge: SIP signalling and MANSCDP bodies from body cameras and 4G units.

Pure protocol code (``sip``, ``digest``, ``manscdp``, ``throttle``) imports no asyncio; ``service`` turns
requests into unit events (through the tracker, like WebSocket telemetry) and ``transport`` owns the UDP
and TCP sockets. Media (INVITE, PS over RTP) is not here yet (docs/protocols.md).
"""
