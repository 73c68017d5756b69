#!/usr/bin/env python3
"""A third-party client of the switch, in Python, written from
docs/PROTOCOL.md alone (issue #15): it knows no .proto file and no generated
code. It discovers the API by gRPC reflection (v1alpha, the version
grpcio-reflection speaks), builds the messages from the descriptors it was
sent, signs each call as the protocol says, and completes a cash-in, then
reads the transaction back and retries the cash-in with the same request id
(which must answer the same transaction).

    python_client.py --profile data/profiles/tho-tang-1.toml \
        --bank-bin 970422 --account 0684771818 --amount 100000

Prints one JSON object; exits 0 only if every step came out as the protocol
says. Needs grpcio, grpcio-reflection and protobuf (ops/clients/python.sh
installs them).
"""

import argparse
import hashlib
import hmac
import json
import secrets
import sys
import time
import tomllib

import grpc
from google.protobuf import descriptor_pool, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def sign(profile, path, body):
    """The four headers of PROTOCOL.md's "Signing a request"."""
    timestamp = str(int(time.time() * 1000))
    nonce = secrets.token_hex(16)
    canonical = "\n".join(
        [
            "SWITCH-HMAC-SHA256",
            path,
            profile["id"],
            timestamp,
            nonce,
            hashlib.sha256(body).hexdigest(),
        ]
    )
    key = bytes.fromhex(profile["secret"])
    signature = hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()
    return [
        ("x-switch-key-id", profile["id"]),
        ("x-switch-timestamp", timestamp),
        ("x-switch-nonce", nonce),
        ("x-switch-signature", signature),
    ]


class Client:
    def __init__(self, profile):
        self.profile = profile
        address = profile["switch"]
        if not address.startswith("http://"):
            raise SystemExit("this client dials http:// switches only")
        self.channel = grpc.insecure_channel(address[len("http://") :])
        self.pool = descriptor_pool.DescriptorPool(
            ProtoReflectionDescriptorDatabase(self.channel)
        )

    def services(self):
        database = ProtoReflectionDescriptorDatabase(self.channel)
        return sorted(database.get_services())

    def call(self, service, method, fields):
        """Build the request from the reflected descriptor, encode it
        once, sign those bytes and send them."""
        svc = self.pool.FindServiceByName(service)
        m = svc.FindMethodByName(method)
        request = message_factory.GetMessageClass(m.input_type)(**fields)
        reply_class = message_factory.GetMessageClass(m.output_type)
        body = request.SerializeToString()
        path = f"/{service}/{method}"
        stub = self.channel.unary_unary(
            path,
            request_serializer=lambda b: b,
            response_deserializer=reply_class.FromString,
        )
        return stub(body, metadata=sign(self.profile, path, body), timeout=30)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", required=True)
    ap.add_argument("--bank-bin", required=True)
    ap.add_argument("--account", required=True)
    ap.add_argument("--amount", type=int, required=True)
    args = ap.parse_args()
    with open(args.profile, "rb") as f:
        profile = tomllib.load(f)

    client = Client(profile)
    out = {"services": client.services()}
    teller = "paymentswitch.v1.Teller"
    if teller not in out["services"]:
        out["error"] = f"{teller} was not discovered by reflection"
        print(json.dumps(out))
        return 1

    request_id = "py-" + secrets.token_hex(8)
    fields = {
        "client_request_id": request_id,
        "bank_bin": args.bank_bin,
        "account": args.account,
        "amount": args.amount,
    }
    try:
        first = client.call(teller, "CashIn", fields)
        again = client.call(teller, "CashIn", fields)
        read = client.call(
            teller,
            "GetTransaction",
            {"transaction_id": first.transaction.transaction_id},
        )
    except grpc.RpcError as e:
        codes = dict(e.trailing_metadata() or ())
        out["error"] = {
            "status": e.code().name,
            "code": codes.get("x-error-code"),
            "message": e.details(),
        }
        print(json.dumps(out))
        return 1

    status_enum = first.transaction.DESCRIPTOR.fields_by_name["status"].enum_type
    out.update(
        {
            "transaction_id": first.transaction.transaction_id,
            "status": status_enum.values_by_number[first.transaction.status].name,
            "retry_same_transaction": again.transaction.transaction_id
            == first.transaction.transaction_id,
            "read_back": read.transaction.transaction_id
            == first.transaction.transaction_id,
        }
    )
    ok = (
        out["status"].endswith("COMPLETED")
        and out["retry_same_transaction"]
        and out["read_back"]
    )
    out["ok"] = ok
    print(json.dumps(out))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
