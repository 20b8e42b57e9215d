#!/usr/bin/env bash
# lwsbridge-test-echo on each of the 7 adapters (--loop L) beside websockets,
# trio-websocket and gevent-websocket, with shared/bench's bench.py and wsload.
#
# usage: benchmarks/bench_adapters.sh [bench.py options]   (default: --rounds 3 --duration 2)
#
# Needs shared/bench set up (shared/bench/setup.sh: /tmp/wsbench/venv, /tmp/wsbench/bin)
# and lwsbridge + pyzmq in that venv:
#   /tmp/wsbench/venv/bin/pip install -e . pyzmq
# shared/ is $LWSBRIDGE_SHARED or the folder beside this clone. Takes ~13 minutes.
# Results: benchmarks/README.md, "Per adapter".
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SHARED="${LWSBRIDGE_SHARED:-$HERE/../../shared}"
LOOPS=(select poll epoll zmq gevent trio asyncio)
ONLY=websockets,trio-websocket,gevent-websocket
ROWS=()
for L in "${LOOPS[@]}"; do
  ROWS+=(--server "lwsbridge-$L={py} -m lwsbridge.apps.echo_server -p {port} -i 127.0.0.1 --loop $L")
  ONLY+=",lwsbridge-$L"
done
if [[ $# -eq 0 ]]; then
  set -- --rounds 3 --duration 2
fi
exec python3 "$SHARED/bench/bench.py" --only "$ONLY" "${ROWS[@]}" "$@"
