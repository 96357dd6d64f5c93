"""Point-to-point asset queries (点对点查控): case-based authorisation, the agency broker, follow-ups.

Not built yet: arrives with the asset-query issue.
"""
