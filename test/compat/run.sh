#!/usr/bin/env bash
# make compat: the client libraries' own shipped integration tests, and the
# frameworks users put on top, run against a freshly built warren-server
# (free loopback ports) and, in the same run, against a reference RabbitMQ
# 3.10, so every result is a comparison:
#
#   amqp091-go   its integration, connection and recovery tests (build tag
#                integration), from the module cache at go.mod's version
#   streadway    github.com/streadway/amqp v1.1.0, the same way
#   amqplib      amqplib's test/ (callback_api, channel_api, connect), from
#                the npm registry
#   celery       a Celery worker round trip with results over AMQP (rpc://),
#                Debian's python3-celery
#   spring       Spring AMQP (spring-rabbit from Maven) configured as the
#                guide's client-connection.xml: test/compat/spring
#
# Nothing is vendored: each suite is copied from the module cache or the
# registry into a temporary directory (the module cache is read-only).
#
# Environment:
#   COMPAT_RABBITMQ_URL   amqp URL of the reference broker's host
#                         (default amqp://guest:guest@127.0.0.1:5672); a vhost
#                         compat-<pid> is created there for the run and
#                         deleted afterwards
#   COMPAT_RABBITMQ_MGMT  its management URL (default http://127.0.0.1:15672)
#   COMPAT_SUITES         suites to run (default: all of the above)
#   COMPAT_WARREN_SERVER  a warren-server binary to test instead of building one
#   COMPAT_KEEP           on failure, copy the outputs (logs, go test -json,
#                         TAP) to this directory
#
# The Go suites' tests connect to vhost "/" whatever AMQP_URL names (their
# test config sets it), so on the reference broker they use its default
# vhost; each suite gets a fresh Warren.
#
# Prints passed/failed/skipped per suite for both brokers and exits non-zero
# when a test that passes on RabbitMQ fails on Warren (or, without a
# reachable RabbitMQ, when any test fails on Warren).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tmp=$(mktemp -d /tmp/warren-compat.XXXXXX)
py=/usr/bin/python3
rmq_url=${COMPAT_RABBITMQ_URL:-amqp://guest:guest@127.0.0.1:5672}
rmq_mgmt=${COMPAT_RABBITMQ_MGMT:-http://127.0.0.1:15672}
suites=${COMPAT_SUITES:-amqp091-go streadway amqplib celery spring}
vhost=compat-$$
pid=""
rmq=0

cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi
  if [ $rmq = 1 ]; then curl -s -o /dev/null -u guest:guest -X DELETE "$rmq_mgmt/api/vhosts/$vhost"; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

freeport() { $py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# ---- the two brokers ----
if [ -n "${COMPAT_WARREN_SERVER:-}" ]; then
  cp "$COMPAT_WARREN_SERVER" "$tmp/warren-server"
else
  echo "compat: building warren-server"
  (cd "$root" && go build -o "$tmp/warren-server" ./cmd/warren-server) || exit 1
fi
# start_warren NAME: a fresh warren-server for one suite (the Go suites'
# tests always use vhost "/", whatever the URL says, and share queue
# names, so suites must not see each other's leftovers)
start_warren() {
  stop_warren
  wport=$(freeport)
  wmgmt=$(freeport)
  "$tmp/warren-server" --port "$wport" --management-port "$wmgmt" --prometheus-port 0 \
    --data-dir "$tmp/data-$1" >"$tmp/server-$1.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    if curl -s -o /dev/null -u guest:guest "http://127.0.0.1:$wmgmt/api/overview" &&
      (exec 3<>/dev/tcp/127.0.0.1/"$wport") 2>/dev/null; then break; fi
    sleep 0.1
  done
  warren_url="amqp://guest:guest@127.0.0.1:$wport/%2F"
  echo "compat: warren-server for $1 on 127.0.0.1:$wport (management $wmgmt)"
}
stop_warren() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi
  pid=""
}

rmq_hostport=${rmq_url#amqp://}
rmq_hostport=${rmq_hostport#*@}
rmq_hostport=${rmq_hostport%%/*}
rmq_mgmt_port=${rmq_mgmt##*:}
if curl -sf -o /dev/null -u guest:guest -X PUT "$rmq_mgmt/api/vhosts/$vhost" &&
  curl -sf -o /dev/null -u guest:guest -X PUT -H 'content-type: application/json' \
    -d '{"configure":".*","write":".*","read":".*"}' "$rmq_mgmt/api/permissions/$vhost/guest"; then
  rmq=1
  rabbit_url="${rmq_url%/}/$vhost"
  echo "compat: reference RabbitMQ at $rmq_hostport, vhost $vhost"
else
  echo "compat: reference RabbitMQ not reachable at $rmq_mgmt: Warren results are not compared"
fi

# ---- suites: each writes PASS|FAIL|SKIP <test> lines to $tmp/<suite>.<broker> ----

# go_suite NAME MODULE@VERSION FILES... : the module's integration tests
go_suite() {
  local jobs=()
  local name=$1 mod=$2
  shift 2
  local dir
  dir=$(cd "$tmp" && GOFLAGS=-mod=mod go mod download -json "$mod" | $py -c 'import json,sys; print(json.load(sys.stdin)["Dir"])') || {
    echo "$name: go mod download $mod failed" >"$tmp/$name.notrun"
    return
  }
  for b in warren rabbitmq; do
    [ $b = rabbitmq ] && [ $rmq = 0 ] && continue
    local src=$tmp/$name-src-$b
    cp -r "$dir" "$src" && chmod -R u+w "$src"
    local mport=$wmgmt url=$warren_url
    if [ $b = rabbitmq ]; then mport=$rmq_mgmt_port url=$rabbit_url; fi
    # the suites reach the management API on a hard-coded port 15672
    # (recovery tests drop connections through it): point it at this broker
    grep -rl 'localhost:15672\|"15672"' "$src" --include=*.go | while read -r f; do
      sed -i "s/localhost:15672/localhost:$mport/g; s/\"15672\"/\"$mport\"/g" "$f"
    done
    local tests
    tests=$(cd "$src" && grep -ho '^func Test[A-Za-z0-9_]*' "$@" | sed 's/^func //' |
      grep -v -x -F -f <(printf '%s\n' $SLOW_TESTS) | paste -sd'|')
    (cd "$src" && AMQP_URL=$url GOFLAGS=-mod=mod nice go test -tags integration -count=1 -json \
      -timeout 240s -run "^($tests)\$" . >"$tmp/$name.$b.json" 2>&1
    $py "$here/gotest2results.py" <"$tmp/$name.$b.json" >"$tmp/$name.$b") &
    jobs+=($!)
  done
  [ ${#jobs[@]} -eq 0 ] || wait "${jobs[@]}"
}

# Excluded everywhere, with the reason printed in the summary: it opens and
# closes channels in a loop for minutes (181 s on RabbitMQ 3.10 with
# amqp091-go; over 300 s, a time-out, with streadway).
SLOW_TESTS="TestChannelCounterShouldNotPanicIssue136"

suite_amqp091-go() {
  local v
  v=$(cd "$root" && go list -m -f '{{.Version}}' github.com/rabbitmq/amqp091-go)
  go_suite amqp091-go "github.com/rabbitmq/amqp091-go@$v" integration_test.go connection_test.go recovery_test.go
}

suite_streadway() {
  go_suite streadway github.com/streadway/amqp@v1.1.0 integration_test.go connection_test.go
}

# amqplib: the newest release that still ships its test/ directory
AMQPLIB_VERSION=2.2.0
suite_amqplib() {
  local jobs=()
  mkdir -p "$tmp/npm" && (cd "$tmp/npm" && npm pack --silent "amqplib@$AMQPLIB_VERSION" >/dev/null 2>&1) || {
    echo "amqplib: npm pack amqplib@$AMQPLIB_VERSION failed" >"$tmp/amqplib.notrun"
    return
  }
  for b in warren rabbitmq; do
    [ $b = rabbitmq ] && [ $rmq = 0 ] && continue
    local src=$tmp/amqplib-$b url=$warren_url
    [ $b = rabbitmq ] && url=$rabbit_url
    mkdir -p "$src" && tar xzf "$tmp"/npm/amqplib-*.tgz -C "$src"
    # The tests need no dependencies beyond node:test. callback_api's tests
    # connect without a URL (amqplib's default, localhost:5672): the preload
    # makes that default $URL, so they reach the broker under test.
    (cd "$src/package" && URL=$url timeout 300 node --require "$here/amqplib-url.js" --test \
      --test-timeout=60000 --test-reporter=tap \
      test/callback_api.test.js test/channel_api.test.js test/connect.test.js >"$tmp/amqplib.$b.tap" 2>&1
    $py "$here/tap2results.py" <"$tmp/amqplib.$b.tap" >"$tmp/amqplib.$b") &
    jobs+=($!)
  done
  [ ${#jobs[@]} -eq 0 ] || wait "${jobs[@]}"
}

suite_celery() {
  local jobs=()
  if ! $py -c 'import celery' 2>/dev/null; then
    echo "celery: Debian package python3-celery is not installed (apt-get install -y python3-celery)" >"$tmp/celery.notrun"
    return
  fi
  for b in warren rabbitmq; do
    [ $b = rabbitmq ] && [ $rmq = 0 ] && continue
    local url=$warren_url
    [ $b = rabbitmq ] && url=$rabbit_url
    (AMQP_URL=$url CELERY_WORKER_LOG=$tmp/celery.$b.log timeout 180 $py "$here/celery_roundtrip.py" \
      >"$tmp/celery.$b.out" 2>&1
    grep -E '^(PASS|FAIL|SKIP) ' "$tmp/celery.$b.out" >"$tmp/celery.$b") &
    jobs+=($!)
  done
  [ ${#jobs[@]} -eq 0 ] || wait "${jobs[@]}"
}

suite_spring() {
  if ! command -v mvn >/dev/null; then
    echo "spring: Maven is not installed (apt-get install -y maven)" >"$tmp/spring.notrun"
    return
  fi
  cp -r "$here/spring" "$tmp/spring-src"
  if ! (cd "$tmp/spring-src" && mvn -B -q test-compile >"$tmp/spring.build.log" 2>&1); then
    echo "spring: could not build the Spring AMQP project (Maven Central unreachable?): $(grep -m1 -o 'Could not .*' "$tmp/spring.build.log" | cut -c1-200)" >"$tmp/spring.notrun"
    return
  fi
  for b in warren rabbitmq; do
    [ $b = rabbitmq ] && [ $rmq = 0 ] && continue
    local port=$wport vh=/
    [ $b = rabbitmq ] && port=${rmq_hostport##*:} vh=$vhost
    rm -rf "$tmp/spring-src/target/surefire-reports"
    (cd "$tmp/spring-src" && timeout 300 mvn -B -q -o test -Damqp.port="$port" -Damqp.vhost="$vh" >"$tmp/spring.$b.log" 2>&1)
    $py "$here/junit2results.py" "$tmp"/spring-src/target/surefire-reports/TEST-*.xml >"$tmp/spring.$b"
  done
}

start=$(date +%s)
for s in $suites; do
  t0=$(date +%s)
  echo "compat: running $s"
  start_warren "$s"
  "suite_$s"
  stop_warren
  echo "compat: $s took $(($(date +%s) - t0))s"
done

# ---- summary ----
$py "$here/summary.py" "$tmp" "$rmq" "$SLOW_TESTS" $suites
status=$?
echo "compat: total $(($(date +%s) - start))s"
if [ $status -ne 0 ]; then
  for f in "$tmp"/server-*.log; do
    echo "--- $(basename "$f") (tail) ---"
    tail -15 "$f"
  done
  if [ -n "${COMPAT_KEEP:-}" ]; then
    cp -r "$tmp" "$COMPAT_KEEP" && echo "compat: outputs kept in $COMPAT_KEEP"
  fi
fi
exit $status
