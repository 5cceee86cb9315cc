// A new user's first session with Warren through the RabbitMQ Java client
// (Debian's librabbitmq-client-java). Prints `ok - name` / `not ok - name:
// why` and a closing `N passed, M failed` line; exits non-zero on failure.
import com.rabbitmq.client.*;
import java.util.*;
import java.util.concurrent.*;

public class JavaBasic {
    static int passed = 0, failed = 0;

    interface Check { void run() throws Exception; }

    static void check(String name, Check c) {
        try {
            c.run();
            passed++;
            System.out.println("ok - " + name);
        } catch (Throwable e) {
            failed++;
            System.out.println("not ok - " + name + ": " + e);
        }
    }

    static void expect(boolean cond, String what) {
        if (!cond) throw new AssertionError(what);
    }

    static int replyCode(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (t instanceof ShutdownSignalException) {
                Object r = ((ShutdownSignalException) t).getReason();
                if (r instanceof AMQP.Channel.Close) return ((AMQP.Channel.Close) r).getReplyCode();
                if (r instanceof AMQP.Connection.Close) return ((AMQP.Connection.Close) r).getReplyCode();
            }
        }
        return -1;
    }

    static GetResponse getOne(Channel ch, String q, boolean autoAck) throws Exception {
        long deadline = System.currentTimeMillis() + 5000;
        while (System.currentTimeMillis() < deadline) {
            GetResponse r = ch.basicGet(q, autoAck);
            if (r != null) return r;
            Thread.sleep(10);
        }
        throw new AssertionError("no message in " + q);
    }

    public static void main(String[] args) throws Exception {
        ConnectionFactory f = new ConnectionFactory();
        f.setHost("127.0.0.1");
        f.setPort(Integer.parseInt(System.getenv().getOrDefault("AMQP_PORT", "5672")));
        f.setUsername("guest");
        f.setPassword("guest");
        f.setAutomaticRecoveryEnabled(false);
        Connection conn = f.newConnection();
        Channel ch = conn.createChannel();
        final String q = "java.q";

        check("declare, bind, publish with confirms", () -> {
            ch.exchangeDeclare("java.x", "direct", false, true, null);
            ch.queueDeclare(q, true, false, false, null);
            ch.queuePurge(q);
            ch.queueBind(q, "java.x", "k");
            ch.confirmSelect();
            AMQP.BasicProperties p = new AMQP.BasicProperties.Builder()
                .contentType("text/plain").deliveryMode(2).priority(4).correlationId("c1")
                .headers(Collections.singletonMap("h", (Object) "v")).build();
            for (int i = 0; i < 10; i++) ch.basicPublish("java.x", "k", p, ("m" + i).getBytes());
            ch.waitForConfirmsOrDie(5000);
        });
        check("basic.get with properties", () -> {
            GetResponse r = getOne(ch, q, true);
            expect(new String(r.getBody()).equals("m0"), "body " + new String(r.getBody()));
            expect("text/plain".equals(r.getProps().getContentType()), "content type");
            expect(r.getProps().getPriority() == 4, "priority");
            expect("v".equals(r.getProps().getHeaders().get("h").toString()), "header");
            expect(r.getMessageCount() == 9, "message count " + r.getMessageCount());
        });
        check("consume with manual ack", () -> {
            BlockingQueue<String> got = new LinkedBlockingQueue<>();
            String tag = ch.basicConsume(q, false, new DefaultConsumer(ch) {
                @Override
                public void handleDelivery(String t, Envelope e, AMQP.BasicProperties p, byte[] body) throws java.io.IOException {
                    got.add(new String(body));
                    getChannel().basicAck(e.getDeliveryTag(), false);
                }
            });
            for (int i = 1; i < 10; i++) {
                String m = got.poll(5, TimeUnit.SECONDS);
                expect(("m" + i).equals(m), "got " + m);
            }
            ch.basicCancel(tag);
        });
        check("reject with requeue redelivers", () -> {
            ch.basicPublish("", q, null, "again".getBytes());
            GetResponse r = getOne(ch, q, false);
            ch.basicReject(r.getEnvelope().getDeliveryTag(), true);
            GetResponse r2 = getOne(ch, q, false);
            expect(r2.getEnvelope().isRedeliver(), "redelivered flag");
            ch.basicAck(r2.getEnvelope().getDeliveryTag(), false);
        });
        check("passive declare of a missing queue is 404", () -> {
            Channel c = conn.createChannel();
            try {
                c.queueDeclarePassive("java.missing");
                throw new AssertionError("succeeded");
            } catch (java.io.IOException e) {
                expect(replyCode(e) == 404, "code " + replyCode(e));
            }
        });
        check("inequivalent redeclare is 406", () -> {
            Channel c = conn.createChannel();
            try {
                c.queueDeclare(q, false, false, false, null);
                throw new AssertionError("succeeded");
            } catch (java.io.IOException e) {
                expect(replyCode(e) == 406, "code " + replyCode(e));
            }
        });
        check("bad password is refused", () -> {
            ConnectionFactory bad = f.clone();
            bad.setPassword("wrong");
            try {
                bad.newConnection().close();
                throw new AssertionError("accepted");
            } catch (AuthenticationFailureException e) {
                // expected: the server closes with 403 ACCESS_REFUSED
            }
        });
        try { ch.queueDelete(q); conn.close(); } catch (Exception e) { }
        System.out.println(passed + " passed, " + failed + " failed");
        System.exit(failed == 0 ? 0 : 1);
    }
}
