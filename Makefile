GO ?= go

.PHONY: test verify bench build generate compat halab halab-long deploy-check

build:
	$(GO) build -o bin/ ./cmd/...

# The whole test suite: Go tests (unit, integration, fuzz seeds, namespace tests)
# and the small real-client suites under test/clients.
test:
	$(GO) test -count=1 -timeout 30m ./...
	bash test/clients/run.sh

generate:
	$(GO) generate ./...

verify:
	test -z "$$(gofmt -l cmd internal)"
	$(GO) vet ./...
	$(GO) generate ./... && git diff --exit-code -- internal/amqp
	$(GO) mod tidy -diff

bench:
	bash bench/run.sh

# The client libraries' own integration suites (amqp091-go, streadway/amqp,
# amqplib), a Celery worker and Spring AMQP, against Warren and the
# reference RabbitMQ in one run (see test/compat/run.sh); ~8 minutes.
compat:
	bash test/compat/run.sh

# The HA lab (test/halab/README.md): the guide's topology in network
# namespaces, built from deploy/examples, every fault with a client
# workload, a table; non-zero exit when a confirmed message was lost.
# Needs root. STACK=rabbitmq for RabbitMQ 3.10 + HAProxy + keepalived,
# STACK=warren,rabbitmq for both side by side. Warren's nodes are clustered
# from warren.conf; HALAB_CLUSTER=0 runs them as independent nodes instead.
# halab-long: every fault N times (default 3) with random timing, then
# medians and worst cases per fault and per stack (hours; for the README).
STACK ?= warren
N ?= 3
halab:
	GO=$(GO) STACK=$(STACK) sh test/halab/run.sh

halab-long:
	GO=$(GO) STACK=$(STACK) HALAB_REPEAT=$(N) HALAB_TIMEOUT=$${HALAB_TIMEOUT:-6h} sh test/halab/run.sh

# The systemd units and example configuration (deploy/): every unit's
# binary and flags checked against the real commands, every example parsed
# with the real parsers. Also part of `make test`.
deploy-check:
	$(GO) test -count=1 ./deploy
