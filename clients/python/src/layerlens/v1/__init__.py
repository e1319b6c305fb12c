"""Generated gRPC stubs for the layerlens.v1 wire API; regenerate with clients/python/generate_proto.py."""
