"""Maps: geofences with a spatial index and debounced crossings, nearest units, track simplification.

Pure computations so far (tested and benchmarked); wiring them to live positions, the console and folium
reports comes with the command-and-control issue.
"""
