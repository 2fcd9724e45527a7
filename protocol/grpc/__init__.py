"""Generated gRPC code for ``io.cloudevents.v1.CloudEventService`` (see ``cloudevent.proto``).

The ``*_pb2*`` modules are generated and committed; regenerate them with ``protocol/grpc/generate.sh`` after
editing the proto. Import the codec (:mod:`protocol.grpc_codec`) rather than these modules where possible.
"""
