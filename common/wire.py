"""What travels in gRPC metadata between agent and collector, beside the messages of protos/census.proto."""

RETRY_AFTER_KEY = "gpucensus-retry-after-seconds"  # trailing metadata: the collector's "at a limit, retry later"
