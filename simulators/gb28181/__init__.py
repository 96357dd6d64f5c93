"""A GB/T 28181 device's media side: a test clip encoded to H.264 and sent as MPEG-PS over RTP."""
