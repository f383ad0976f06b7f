#!/usr/bin/env python3
"""A gRPC client for Herald that knows nothing but server reflection.

It has no generated stubs and no .proto file: it asks the server (grpc.reflection.v1alpha, the
protocol grpcio-reflection speaks) which services it has, loads the descriptors of
herald.calendar.v1.CalendarService and of every file they import (google/protobuf/timestamp.proto,
...), builds the message classes from them, calls ListDayEvents for a date and prints the answer
as JSON: {"period_start": ..., "period_end": ..., "events": [{"id": ..., "title": ..., ...}]}.

    grpc_reflection_client.py ADDR TOKEN DATE [--tz ZONE]

ADDR is host:port of Herald's gRPC server, TOKEN an access token from POST /api/v1/auth/login,
DATE YYYY-MM-DD. Needs grpcio, grpcio-reflection and protobuf. Exits 1 with the gRPC status on
stderr when a call fails, 2 when the server does not offer the service.
"""

import argparse
import json
import sys

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

SERVICE = "herald.calendar.v1.CalendarService"
METHOD = "ListDayEvents"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("addr", help="host:port of Herald's gRPC server")
    parser.add_argument("token", help="an access token")
    parser.add_argument("date", help="YYYY-MM-DD")
    parser.add_argument("--tz", help="IANA time zone of the day (UTC when absent)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per call")
    args = parser.parse_args()

    with grpc.insecure_channel(args.addr) as channel:
        grpc.channel_ready_future(channel).result(timeout=args.timeout)
        reflection = ProtoReflectionDescriptorDatabase(channel)
        try:
            services = list(reflection.get_services())
        except grpc.RpcError as err:
            return failed("listing services through reflection", err)
        if SERVICE not in services:
            print(f"the server does not offer {SERVICE}; it offers {services}", file=sys.stderr)
            return 2

        # The pool pulls each file the service needs, and its imports, through reflection.
        pool = descriptor_pool.DescriptorPool(reflection)
        method = pool.FindServiceByName(SERVICE).FindMethodByName(METHOD)
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)

        request = request_class(date=args.date)
        if args.tz is not None:
            request.tz = args.tz
        call = channel.unary_unary(
            f"/{SERVICE}/{METHOD}",
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        try:
            response = call(request, metadata=[("authorization", f"Bearer {args.token}")], timeout=args.timeout)
        except grpc.RpcError as err:
            return failed(METHOD, err)

    answer = json_format.MessageToDict(response, preserving_proto_field_name=True)
    answer.setdefault("events", [])
    print(json.dumps(answer, indent=2, sort_keys=True))
    return 0


def failed(what: str, err: grpc.RpcError) -> int:
    print(f"{what} failed: {err.code().name}: {err.details()}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
