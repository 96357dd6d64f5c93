-- GB/T 28181 devices: how each sends its RTP (gb28181/media/live.py): 'udp' or 'tcp-passive' (the device
-- connects to the platform's port, RFC 4571 framing); NULL follows the platform's gb28181.rtp_transport.
ALTER TABLE gb_devices ADD COLUMN rtp_transport TEXT;
