"""Generated gRPC and protobuf code for setpoint.edge.v1 (sdk/python/gen.sh makes it; do not edit)."""
