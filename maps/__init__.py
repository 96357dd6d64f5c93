"""Maps: geofences, nearest units, track simplification, folium reports, offline basemap.

Not built yet: arrives with the command-and-control issue.
"""
