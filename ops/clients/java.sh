#!/usr/bin/env bash
# Generate the API's Java message code from proto/ with Debian's protoc and
# compile it with javac against Debian's protobuf runtime (issue #15: a
# client generated from the .proto files must compile). Installs
# protobuf-compiler and libprotobuf-java where missing. C++: cpp.sh beside it.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
if ! command -v protoc >/dev/null 2>&1 || [ ! -f /usr/share/java/protobuf.jar ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends protobuf-compiler libprotobuf-java >/dev/null
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mkdir -p "$out/java" "$out/classes"
protoc -I "$root/proto/proto" --java_out="$out/java" "$root"/proto/proto/paymentswitch/v1/*.proto
javac -nowarn -d "$out/classes" -cp /usr/share/java/protobuf.jar $(find "$out/java" -name '*.java')
n=$(find "$out/classes" -name '*.class' | wc -l)
echo "java: $(find "$out/java" -name '*.java' | wc -l) generated files compiled into $n classes (package vn.post.paymentswitch.v1)"
