"""Stand-ins for W&B, Cloud Run and Vertex AI that speak the real wire protocols.

The production clients reach them exactly as they reach Google and W&B (HTTP GraphQL; gRPC with the
real `run_v2` and `aiplatform_v1` messages), so the tests exercise the real request and response
paths. The same stand-ins make up the `sandbox` command; there is one implementation, not a second
copy under tests/. Every server binds 127.0.0.1 on a port the OS picks.
"""
