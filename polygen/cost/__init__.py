"""Cost model (FLOPs, bytes, estimated time per backend) and the search for the cheapest plan."""
