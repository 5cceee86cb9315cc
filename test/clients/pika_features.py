#!/usr/bin/python3
"""Queue features through python pika, as a RabbitMQ 3.10 user would write
them: TTLs, queue expiry, length limits, dead lettering with x-death,
priorities, single active consumer, transactions, direct reply-to.
Prints `ok - name` / `not ok - name: why` and `N passed, M failed`."""
import os
import sys
import time

import pika
from pika.exceptions import ChannelClosedByBroker

URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
passed = failed = 0
conn = pika.BlockingConnection(pika.URLParameters(URL))


def check(name, fn):
    global passed, failed
    ch = conn.channel()
    try:
        fn(ch)
        passed += 1
        print("ok - " + name)
    except Exception as e:  # noqa: BLE001
        failed += 1
        print("not ok - %s: %r" % (name, e))
    finally:
        try:
            ch.close()
        except Exception:  # noqa: BLE001
            pass


def count(ch, q):
    return ch.queue_declare(q, passive=True).method.message_count


def eventually(cond, what, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


def t_message_ttl(ch):
    ch.queue_declare("pf.ttl", auto_delete=False, arguments={"x-message-ttl": 50})
    ch.queue_purge("pf.ttl")
    ch.basic_publish("", "pf.ttl", b"x")
    ch.basic_publish("", "pf.ttl", b"y", pika.BasicProperties(expiration="60000"))
    eventually(lambda: count(ch, "pf.ttl") == 0, "queue TTL expiry")
    ch.queue_delete("pf.ttl")


def t_per_message_ttl(ch):
    ch.queue_declare("pf.pttl")
    ch.queue_purge("pf.pttl")
    ch.basic_publish("", "pf.pttl", b"long", pika.BasicProperties(expiration="60000"))
    ch.basic_publish("", "pf.pttl", b"short", pika.BasicProperties(expiration="30"))
    eventually(lambda: count(ch, "pf.pttl") == 1, "per-message expiry behind the head")
    ch.queue_delete("pf.pttl")


def t_expires(ch):
    ch.queue_declare("pf.exp", arguments={"x-expires": 200})
    # a passive declare counts as use (it renews the lease), so look once
    time.sleep(0.6)
    c = conn.channel()
    try:
        c.queue_declare("pf.exp", passive=True)
        raise AssertionError("queue with x-expires 200 ms still there after 600 ms")
    except ChannelClosedByBroker as e:
        assert e.reply_code == 404, e


def t_max_length(ch):
    ch.queue_declare("pf.len", arguments={"x-max-length": 2})
    ch.queue_purge("pf.len")
    for i in range(5):
        ch.basic_publish("", "pf.len", str(i).encode())
    eventually(lambda: count(ch, "pf.len") == 2, "max-length")
    _, _, b1 = ch.basic_get("pf.len", auto_ack=True)
    assert b1 == b"3", b1
    ch.queue_delete("pf.len")


def t_reject_publish(ch):
    ch.confirm_delivery()
    ch.queue_declare("pf.rp", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    ch.queue_purge("pf.rp")
    ch.basic_publish("", "pf.rp", b"kept")
    try:
        ch.basic_publish("", "pf.rp", b"refused")
        raise AssertionError("reject-publish did not nack")
    except pika.exceptions.NackError:
        pass
    ch.queue_delete("pf.rp")


def t_dead_letter(ch):
    ch.exchange_declare("pf.dlx", "fanout", auto_delete=True)
    ch.queue_declare("pf.dead", auto_delete=True)
    ch.queue_bind("pf.dead", "pf.dlx")
    ch.queue_declare("pf.work", arguments={"x-dead-letter-exchange": "pf.dlx"})
    ch.basic_publish("", "pf.work", b"bad")
    m, _, _ = ch.basic_get("pf.work")
    ch.basic_reject(m.delivery_tag, requeue=False)
    got = []
    eventually(lambda: got.append(ch.basic_get("pf.dead", auto_ack=True)) or got[-1][0] is not None, "dead-lettered message")
    _, props, body = got[-1]
    d = props.headers["x-death"][0]
    assert body == b"bad" and d["reason"] == "rejected" and d["queue"] == "pf.work" and d["count"] == 1, props.headers
    assert d["exchange"] == "" and d["routing-keys"] == ["pf.work"], d
    assert props.headers["x-first-death-reason"] == "rejected", props.headers
    ch.queue_delete("pf.work")


def t_priority(ch):
    ch.queue_declare("pf.prio", arguments={"x-max-priority": 5})
    ch.queue_purge("pf.prio")
    for i, p in enumerate([1, 5, 3]):
        ch.basic_publish("", "pf.prio", str(i).encode(), pika.BasicProperties(priority=p))
    order = b"".join(ch.basic_get("pf.prio", auto_ack=True)[2] for _ in range(3))
    assert order == b"120", order
    ch.queue_delete("pf.prio")


def t_single_active_consumer(ch):
    ch.queue_declare("pf.sac", arguments={"x-single-active-consumer": True})
    ch.queue_purge("pf.sac")
    got = {"a": 0, "b": 0}
    ch.basic_consume("pf.sac", lambda c, m, p, b: got.__setitem__("a", got["a"] + 1), auto_ack=True)
    ch.basic_consume("pf.sac", lambda c, m, p, b: got.__setitem__("b", got["b"] + 1), auto_ack=True)
    for i in range(4):
        ch.basic_publish("", "pf.sac", b"m")
    deadline = time.time() + 3
    while time.time() < deadline and got["a"] < 4:
        conn.process_data_events(time_limit=0.05)
    conn.process_data_events(time_limit=0.1)
    assert got == {"a": 4, "b": 0}, got
    ch.queue_delete("pf.sac")


def t_transactions(ch):
    ch.queue_declare("pf.tx")
    ch.queue_purge("pf.tx")
    ch.tx_select()
    ch.basic_publish("", "pf.tx", b"rolled back")
    ch.tx_rollback()
    ch.basic_publish("", "pf.tx", b"committed")
    ch.tx_commit()
    assert count(ch, "pf.tx") == 1
    ch.queue_delete("pf.tx")


def t_direct_reply_to(ch):
    ch.queue_declare("pf.rpc")
    ch.queue_purge("pf.rpc")
    replies = []
    ch.basic_consume("amq.rabbitmq.reply-to", lambda c, m, p, b: replies.append(b), auto_ack=True)
    ch.basic_publish("", "pf.rpc", b"ping", pika.BasicProperties(reply_to="amq.rabbitmq.reply-to"))
    srv = conn.channel()
    m, props, body = None, None, None
    deadline = time.time() + 5
    while m is None and time.time() < deadline:
        m, props, body = srv.basic_get("pf.rpc", auto_ack=True)
    assert props.reply_to.startswith("amq.rabbitmq.reply-to."), props.reply_to
    srv.basic_publish("", props.reply_to, b"pong")
    eventually(lambda: conn.process_data_events(time_limit=0.05) or replies == [b"pong"], "reply")
    srv.close()
    ch.queue_delete("pf.rpc")


for name, fn in [("x-message-ttl expires without a consumer", t_message_ttl),
                 ("per-message expiration behind the head", t_per_message_ttl),
                 ("x-expires deletes an unused queue", t_expires),
                 ("x-max-length drops the head", t_max_length),
                 ("reject-publish nacks", t_reject_publish),
                 ("dead lettering writes x-death", t_dead_letter),
                 ("priorities", t_priority),
                 ("single active consumer", t_single_active_consumer),
                 ("transactions", t_transactions),
                 ("direct reply-to", t_direct_reply_to)]:
    check(name, fn)
conn.close()
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
