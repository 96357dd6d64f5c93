"""Several server processes as one: leases for work that must run once, and where each node is reached."""
