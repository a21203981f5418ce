"""gRPC server options the test controller and router share with Jumpstarter's.

Its operator (``controller/deploy/operator``, jumpstarter-dev/jumpstarter) gives the controller
and the router a keepalive enforcement policy of ``minTime: 1s`` and ``permitWithoutStream:
true`` by default: clients may PING every second, with or without calls. grpc core's own default
answers PINGs more often than every 5 minutes with GOAWAY ENHANCE_YOUR_CALM "too_many_pings",
which a real deployment never sends to the gateway's 30 s keepalive.
"""

KEEPALIVE_ENFORCEMENT = [
    ("grpc.http2.min_ping_interval_without_data_ms", 1000),
    ("grpc.keepalive_permit_without_calls", 1),
]
