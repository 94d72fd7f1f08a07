"""The gRPC edge: protobuf stops here. Inside, code passes core.models dataclasses."""
