"""GB/T 28181 live media: INVITE a device, receive its MPEG-PS over RTP, hand the encoded frames to the hub."""
