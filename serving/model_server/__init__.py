"""The model server: a TF Serving twin (same gRPC and REST APIs, same config files)."""
