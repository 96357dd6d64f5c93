"""Agency simulator: one real aiohttp server per partner agency, speaking the agency JSON protocol
(docs/protocols.md, "Partner agencies"), with configurable latency and faults and deterministic data."""
