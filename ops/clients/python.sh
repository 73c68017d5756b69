#!/usr/bin/env bash
# A third-party client (Python, from docs/PROTOCOL.md alone: reflection to
# discover the API, HMAC signing by hand) completes a cash-in against a real
# switch, retries it with the same request id and reads it back (issue #15).
# Installs grpcio, grpcio-reflection and protobuf from PyPI where missing;
# builds and starts the switch on a throw-away data directory.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
if ! python3 -c "import grpc, grpc_reflection, google.protobuf" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check \
    grpcio grpcio-reflection protobuf 2>&1 | grep -v "Running pip as the 'root' user" || true
fi
(cd "$root" && cargo build --quiet --locked -p switch --bin switch)
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
metrics=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$root/target/debug/switch" serve --data "$dir/data" --listen "127.0.0.1:$port" \
  --metrics-listen "127.0.0.1:$metrics" --console-listen off >"$dir/switch.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do
  [ -f "$dir/data/profiles/tho-tang-1.toml" ] && python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null && break
  sleep 0.2
done
read -r bin account < <(python3 -c "
import json
c = json.load(open('$dir/data/profiles/customers.json'))[0]
print(c['bank'], c['account'])")
if ! python3 "$root/ops/clients/python_client.py" --profile "$dir/data/profiles/tho-tang-1.toml" \
  --bank-bin "$bin" --account "$account" --amount 100000; then
  echo "python client failed; the switch's log:" >&2
  tail -20 "$dir/switch.log" >&2
  exit 1
fi
