#!/bin/sh
# make halab [STACK=warren|rabbitmq|warren,rabbitmq]: the whole fault list,
# a table, exit non-zero when a confirmed message was lost. make halab-long
# sets HALAB_REPEAT (runs per fault) and HALAB_TIMEOUT; HALAB_CLUSTER=0,
# HALAB_SEED and HALAB_FAULTS pass through the environment. The test binary is built once
# and run directly so SIGINT/SIGTERM reach it: it tears its labs down (only
# its own namespaces and processes) before exiting.
set -e
cd "$(dirname "$0")/../.."
dir=$(mktemp -d /tmp/halab-run.XXXXXX)
trap 'rm -rf "$dir"' EXIT
${GO:-go} test -c -o "$dir/halab.test" ./test/halab
cd test/halab
HALAB_FULL=1 STACK="${STACK:-warren}" "$dir/halab.test" -test.run '^TestFull$' -test.v -test.count 1 -test.timeout "${HALAB_TIMEOUT:-40m}" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid; rm -rf "$dir"; exit 130' INT TERM
set +e
wait $pid
rc=$?
exit $rc
