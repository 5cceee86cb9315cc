package warren.compat;

import static org.junit.jupiter.api.Assertions.*;

import java.util.List;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.springframework.amqp.core.Message;
import org.springframework.amqp.core.MessageProperties;
import org.springframework.amqp.core.ReturnedMessage;
import org.springframework.amqp.rabbit.connection.CorrelationData;
import org.springframework.amqp.rabbit.core.RabbitAdmin;
import org.springframework.amqp.rabbit.core.RabbitTemplate;
import org.springframework.amqp.rabbit.listener.MessageListenerContainer;
import org.springframework.context.support.GenericXmlApplicationContext;

/** Spring AMQP as applications configure it (client-connection.xml). */
class SpringCompatTest {
    static GenericXmlApplicationContext ctx;
    static RabbitTemplate template;
    static RabbitAdmin admin;

    @BeforeAll
    static void start() {
        ctx = new GenericXmlApplicationContext("classpath:client-connection.xml");
        template = ctx.getBean("template", RabbitTemplate.class);
        admin = ctx.getBean("admin", RabbitAdmin.class);
        admin.initialize();
        admin.purgeQueue("spring.compat.orders", false);
    }

    @AfterAll
    static void stop() {
        if (ctx != null) {
            for (String n : new String[] {"container", "rpcContainer"}) {
                ctx.getBean(n, MessageListenerContainer.class).stop();
            }
            admin.deleteExchange("spring.compat.direct");
            admin.deleteQueue("spring.compat.orders");
            ctx.close();
        }
    }

    @Test
    void publisherConfirmAck() throws Exception {
        CorrelationData cd = new CorrelationData(UUID.randomUUID().toString());
        template.convertAndSend("spring.compat.direct", "orders", "confirmed", cd);
        CorrelationData.Confirm c = cd.getFuture().get(10, TimeUnit.SECONDS);
        assertTrue(c.isAck(), "publisher confirm was a nack: " + c.getReason());
        assertNull(cd.getReturned(), "a routed message came back as returned");
        Message m = template.receive("spring.compat.orders", 5000);
        assertNotNull(m, "confirmed message not in the queue");
        assertEquals("confirmed", new String(m.getBody()));
    }

    @Test
    void mandatoryReturnThenConfirm() throws Exception {
        CountDownLatch returned = new CountDownLatch(1);
        ReturnedMessage[] got = new ReturnedMessage[1];
        RabbitTemplate t = new RabbitTemplate(template.getConnectionFactory());
        t.setMandatory(true);
        t.setReturnsCallback(r -> {
            got[0] = r;
            returned.countDown();
        });
        CorrelationData cd = new CorrelationData(UUID.randomUUID().toString());
        t.convertAndSend("spring.compat.direct", "nobody-listens", "lost", cd);
        assertTrue(returned.await(10, TimeUnit.SECONDS), "no basic.return for an unroutable mandatory message");
        assertEquals(312, got[0].getReplyCode());
        assertEquals("NO_ROUTE", got[0].getReplyText());
        assertEquals("nobody-listens", got[0].getRoutingKey());
        CorrelationData.Confirm c = cd.getFuture().get(10, TimeUnit.SECONDS);
        assertTrue(c.isAck(), "unroutable message must still be confirmed (ack)");
    }

    @Test
    void listenerContainerManualAcks() throws Exception {
        ManualAckListener l = ctx.getBean(ManualAckListener.class);
        l.acked = new CountDownLatch(4);
        for (String b : List.of("a", "b", "requeue-me", "c")) {
            CorrelationData cd = new CorrelationData(b);
            template.convertAndSend("spring.compat.direct", "orders", b, cd);
            assertTrue(cd.getFuture().get(10, TimeUnit.SECONDS).isAck());
        }
        MessageListenerContainer c = ctx.getBean("container", MessageListenerContainer.class);
        c.start();
        assertTrue(l.acked.await(20, TimeUnit.SECONDS), "listener acked " + l.bodies);
        assertTrue(l.bodies.containsAll(List.of("a", "b", "requeue-me", "c")), "got " + l.bodies);
        int i = l.bodies.indexOf("requeue-me");
        assertTrue(l.redelivered.get(i), "the rejected message came back without the redelivered flag");
        c.stop();
        Properties p = admin.getQueueProperties("spring.compat.orders");
        assertEquals(0, ((Number) p.get(RabbitAdmin.QUEUE_MESSAGE_COUNT)).intValue(), "acked messages still in the queue");
    }

    @Test
    void rpcOverDirectReplyTo() {
        MessageListenerContainer c = ctx.getBean("rpcContainer", MessageListenerContainer.class);
        c.start();
        try {
            RabbitTemplate t = new RabbitTemplate(template.getConnectionFactory());
            t.setReplyTimeout(10000);
            Object reply = t.convertSendAndReceive("", "spring.compat.rpc", "ping");
            assertEquals("PING", reply);
        } finally {
            c.stop();
        }
    }

    @Test
    void rawMessageProperties() {
        MessageProperties props = new MessageProperties();
        props.setHeader("x-compat", 42);
        props.setContentType("application/x-compat");
        props.setPriority(3);
        template.send("spring.compat.direct", "orders", new Message("props".getBytes(), props));
        Message m = template.receive("spring.compat.orders", 5000);
        assertNotNull(m);
        assertEquals("application/x-compat", m.getMessageProperties().getContentType());
        assertEquals(42, ((Number) m.getMessageProperties().getHeader("x-compat")).intValue());
        assertEquals(3, m.getMessageProperties().getPriority());
    }
}
