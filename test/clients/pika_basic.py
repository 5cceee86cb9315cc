#!/usr/bin/python3
"""A new user's first session with Warren through python pika (Debian's
python3-pika): connect, declare, publish, consume, confirm, reject/requeue,
and the errors a user meets. Prints `ok - name` / `not ok - name: why` and
a closing `N passed, M failed` line; exits non-zero on any failure."""
import datetime
import os
import sys
import time

import pika
from pika.exceptions import ChannelClosedByBroker, ProbableAccessDeniedError, ConnectionClosedByBroker, UnroutableError

URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
passed = failed = 0


def check(name, fn):
    global passed, failed
    try:
        fn()
        passed += 1
        print("ok - " + name)
    except Exception as e:  # noqa: BLE001 - report every failure
        failed += 1
        print("not ok - %s: %r" % (name, e))


def connect():
    return pika.BlockingConnection(pika.URLParameters(URL))


def get_one(ch, q, auto_ack=True, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        m, props, body = ch.basic_get(q, auto_ack=auto_ack)
        if m is not None:
            return m, props, body
        time.sleep(0.01)
    raise AssertionError("no message in %s within %ss" % (q, timeout))


conn = connect()
ch = conn.channel()


def t_declare_publish_get():
    ch.exchange_declare("pika.direct", "direct", auto_delete=True)
    ch.exchange_declare("pika.topic", "topic", auto_delete=True)
    ch.exchange_declare("pika.fanout", "fanout", auto_delete=True)
    ch.queue_declare("pika.q", durable=True)
    ch.queue_purge("pika.q")
    ch.queue_bind("pika.q", "pika.topic", routing_key="a.*")
    ch.basic_publish("pika.topic", "a.b", b"hello")
    _, _, body = get_one(ch, "pika.q")
    assert body == b"hello", body


def t_server_named_exclusive():
    r = ch.queue_declare("", exclusive=True)
    assert r.method.queue.startswith("amq.gen-"), r.method.queue


def t_properties_roundtrip():
    ts = 1700000000
    headers = {"s": "str", "i": 42, "neg": -7, "b": True, "nested": {"x": "y"}, "list": [1, "two"], "bytes": b"\x00\x01"}
    props = pika.BasicProperties(content_type="application/json", content_encoding="utf-8", headers=headers,
                                 delivery_mode=2, priority=3, correlation_id="corr", reply_to="rq", expiration="60000",
                                 message_id="mid", timestamp=ts, type="t", app_id="app")
    ch.basic_publish("", "pika.q", b"{}", props)
    _, p, body = get_one(ch, "pika.q")
    assert body == b"{}"
    for k in ("content_type", "content_encoding", "delivery_mode", "priority", "correlation_id", "reply_to",
              "expiration", "message_id", "timestamp", "type", "app_id"):
        assert getattr(p, k) == getattr(props, k), (k, getattr(p, k), getattr(props, k))
    for k, v in headers.items():
        assert p.headers[k] == v, (k, p.headers[k], v)


def t_consume_manual_ack():
    for i in range(3):
        ch.basic_publish("", "pika.q", str(i).encode())
    got = []
    for m, _, body in ch.consume("pika.q", inactivity_timeout=5):
        if m is None:
            break
        got.append(body)
        ch.basic_ack(m.delivery_tag)
        if len(got) == 3:
            break
    ch.cancel()
    assert got == [b"0", b"1", b"2"], got


def t_confirms_and_mandatory():
    c = conn.channel()
    c.confirm_delivery()
    c.basic_publish("", "pika.q", b"confirmed")
    try:
        c.basic_publish("pika.direct", "nobody", b"x", mandatory=True)
        raise AssertionError("unroutable mandatory message was not returned")
    except UnroutableError:
        pass
    get_one(c, "pika.q")
    c.close()


def t_reject_requeue():
    ch.basic_publish("", "pika.q", b"again")
    m, _, _ = get_one(ch, "pika.q", auto_ack=False)
    ch.basic_reject(m.delivery_tag, requeue=True)
    m2, _, body = get_one(ch, "pika.q", auto_ack=False)
    assert body == b"again" and m2.redelivered, (body, m2.redelivered)
    ch.basic_nack(m2.delivery_tag, requeue=False)
    r = ch.queue_declare("pika.q", passive=True)
    assert r.method.message_count == 0, r.method.message_count


def t_prefetch():
    c = conn.channel()
    c.basic_qos(prefetch_count=2)
    for i in range(5):
        c.basic_publish("", "pika.q", str(i).encode())
    seen = []
    c.basic_consume("pika.q", lambda ch_, m, p, b: seen.append(m.delivery_tag))
    conn.process_data_events(time_limit=0.3)
    assert len(seen) == 2, seen
    c.close()  # the unacked go back
    r = ch.queue_declare("pika.q", passive=True)
    assert r.method.message_count == 5, r.method.message_count
    ch.queue_purge("pika.q")


def t_error_404():
    c = conn.channel()
    try:
        c.queue_declare("pika.missing", passive=True)
        raise AssertionError("passive declare of a missing queue succeeded")
    except ChannelClosedByBroker as e:
        assert e.reply_code == 404, e


def t_error_406():
    c = conn.channel()
    c.queue_declare("pika.args", arguments={"x-max-length": 5}, auto_delete=True)
    try:
        c.queue_declare("pika.args", arguments={"x-max-length": 6}, auto_delete=True)
        raise AssertionError("inequivalent redeclare succeeded")
    except ChannelClosedByBroker as e:
        assert e.reply_code == 406, e


def t_vhost_refused():
    params = pika.URLParameters(URL)
    params.virtual_host = "no-such-vhost"
    try:
        pika.BlockingConnection(params).close()
        raise AssertionError("connection to a missing vhost succeeded")
    except (ProbableAccessDeniedError, ConnectionClosedByBroker):
        pass


def t_bad_password():
    params = pika.URLParameters(URL)
    params.credentials = pika.PlainCredentials("guest", "wrong")
    try:
        pika.BlockingConnection(params).close()
        raise AssertionError("bad password accepted")
    except Exception as e:  # pika raises ProbableAuthenticationError or ConnectionClosedByBroker(403)
        assert "403" in repr(e) or "Authentication" in type(e).__name__, repr(e)


for name, fn in [("declare, bind, publish, get", t_declare_publish_get),
                 ("server-named exclusive queue", t_server_named_exclusive),
                 ("properties and headers delivered as published", t_properties_roundtrip),
                 ("consume with manual ack in order", t_consume_manual_ack),
                 ("publisher confirms and mandatory returns", t_confirms_and_mandatory),
                 ("reject requeue redelivers, nack drops", t_reject_requeue),
                 ("prefetch 2 limits unacked deliveries", t_prefetch),
                 ("passive declare of a missing queue is 404", t_error_404),
                 ("inequivalent redeclare is 406", t_error_406),
                 ("unknown vhost refused", t_vhost_refused),
                 ("bad password refused", t_bad_password)]:
    check(name, fn)

try:
    ch.queue_delete("pika.q")
    conn.close()
except Exception:  # noqa: BLE001
    pass
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
