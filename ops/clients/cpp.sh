#!/usr/bin/env bash
# Generate the API's C++ message code from proto/ with Debian's protoc and
# compile every generated file with g++ against Debian's protobuf headers
# (issue #15: a client generated from the .proto files must compile; with
# the package `switch.v1` it did not, `switch` being a keyword). Installs
# protobuf-compiler and libprotobuf-dev where missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
if ! command -v protoc >/dev/null 2>&1 || [ ! -f /usr/include/google/protobuf/message.h ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends protobuf-compiler libprotobuf-dev >/dev/null
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
protoc -I "$root/proto/proto" --cpp_out="$out" "$root"/proto/proto/paymentswitch/v1/*.proto
n=0
for f in "$out"/paymentswitch/v1/*.pb.cc; do
  g++ -std=c++17 -c -I "$out" "$f" -o "$f.o"
  n=$((n + 1))
done
grep -q "namespace paymentswitch" "$out/paymentswitch/v1/teller.pb.h"
echo "c++: $n generated files compiled (namespace paymentswitch::v1)"
