"""A Celery worker using the broker at $AMQP_URL, with results over AMQP
(the rpc:// backend): task round trips as an application does them.
Run by run.sh with /usr/bin/python3 (Debian's python3-celery). Prints one
line per check: PASS|FAIL <name>."""
import os
import subprocess
import sys
import time
import traceback
import uuid

from celery import Celery

URL = os.environ["AMQP_URL"]
QUEUE = os.environ.get("CELERY_QUEUE") or "compat-" + uuid.uuid4().hex[:8]

app = Celery("celery_roundtrip", broker=URL, backend="rpc://")
app.conf.update(
    task_default_queue=QUEUE,
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=1,
    task_acks_late=True,
    result_expires=60,
)


@app.task
def add(x, y):
    return x + y


@app.task
def fail(msg):
    raise ValueError(msg)


@app.task(bind=True, max_retries=2, default_retry_delay=0.1)
def flaky(self, key):
    n = self.request.retries
    if n < 2:
        raise self.retry(exc=RuntimeError("try again"))
    return n


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, CELERY_QUEUE=QUEUE, PYTHONPATH=here)
    log = open(os.environ.get("CELERY_WORKER_LOG", os.devnull), "ab")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "celery_roundtrip", "worker",
         "--pool=solo", "--loglevel=WARNING", "--without-gossip", "--without-mingle",
         "-n", "compat-%s@localhost" % QUEUE, "-Q", QUEUE],
        env=env, cwd=here, stdout=log, stderr=subprocess.STDOUT)
    results = []

    def check(name, fn):
        try:
            fn()
            results.append(("PASS", name))
        except Exception:
            traceback.print_exc()
            results.append(("FAIL", name))

    def ping():
        deadline = time.time() + 30
        while time.time() < deadline:
            if app.control.ping(timeout=1.0, destination=["compat-%s@localhost" % QUEUE]):
                return
        raise AssertionError("worker did not answer a broadcast ping within 30s")

    def roundtrip():
        r = add.delay(2, 3)
        assert r.get(timeout=30) == 5, r

    def many():
        rs = [add.delay(i, i) for i in range(20)]
        assert [r.get(timeout=30) for r in rs] == [2 * i for i in range(20)]

    def error():
        r = fail.delay("boom")
        try:
            r.get(timeout=30)
        except ValueError as e:
            assert "boom" in str(e)
            return
        raise AssertionError("task exception not propagated")

    def retry():
        assert flaky.delay("k").get(timeout=30) == 2

    try:
        check("worker answers control ping (broadcast, reply queue)", ping)
        check("task round trip with rpc result backend", roundtrip)
        check("20 tasks, results in order", many)
        check("task exception propagated to the caller", error)
        check("task retried twice then succeeds", retry)
    finally:
        worker.terminate()
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
        with app.connection_for_write() as conn:
            try:
                conn.default_channel.queue_delete(QUEUE)
            except Exception:
                pass
    for status, name in results:
        print(status, name)
    return 0 if all(s == "PASS" for s, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
