package warren.compat;

import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;

import com.rabbitmq.client.Channel;

import org.springframework.amqp.core.Message;
import org.springframework.amqp.rabbit.listener.api.ChannelAwareMessageListener;

/** Acks by hand; rejects (requeue) the first delivery of a "requeue-me" message. */
public class ManualAckListener implements ChannelAwareMessageListener {
    public volatile CountDownLatch acked = new CountDownLatch(0);
    public final List<String> bodies = new CopyOnWriteArrayList<>();
    public final List<Boolean> redelivered = new CopyOnWriteArrayList<>();

    @Override
    public void onMessage(Message message, Channel channel) throws Exception {
        String body = new String(message.getBody());
        long tag = message.getMessageProperties().getDeliveryTag();
        boolean again = Boolean.TRUE.equals(message.getMessageProperties().getRedelivered());
        if (body.equals("requeue-me") && !again) {
            channel.basicReject(tag, true);
            return;
        }
        bodies.add(body);
        redelivered.add(again);
        channel.basicAck(tag, false);
        acked.countDown();
    }
}
