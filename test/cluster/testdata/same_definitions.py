"""Connects with pika to one node of a Warren cluster and checks that it
sees the definitions declared through another node: a passive declare of
the exchange and the queue succeeds, the queue's message count is printed,
and one message is published through this node to the queue.

usage: same_definitions.py HOST USER PASS EXCHANGE QUEUE
"""
import sys

import pika

host, user, password, exchange, queue = sys.argv[1:6]
params = pika.ConnectionParameters(host=host, credentials=pika.PlainCredentials(user, password))
conn = pika.BlockingConnection(params)
ch = conn.channel()
ch.exchange_declare(exchange=exchange, passive=True)
ok = ch.queue_declare(queue=queue, passive=True)
count = ok.method.message_count
ch.confirm_delivery()
ch.basic_publish(exchange=exchange, routing_key=queue, body=("from " + host).encode(),
                 properties=pika.BasicProperties(delivery_mode=2), mandatory=True)
print("messages=%d" % count)
conn.close()
