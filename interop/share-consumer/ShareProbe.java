import java.time.Duration;
import java.util.List;
import java.util.Properties;
import org.apache.kafka.clients.consumer.AcknowledgeType;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaShareConsumer;
import org.apache.kafka.common.serialization.StringDeserializer;

/**
 * A share-group member (KIP-932) run by tests/compat/test_share_groups.py against loosely and Apache Kafka.
 *
 * <p>Arguments: bootstrap group topic mode expect idleMs. Prints one line per delivery, "partition offset
 * deliveryCount value", in the order received. Modes: accept (acknowledge ACCEPT), release-first (RELEASE a record
 * on its first delivery, ACCEPT it after), release-all (RELEASE every record but one valued "sentinel", which is
 * ACCEPTed), hold (print the first records received and halt the JVM at once, acknowledging nothing and never
 * leaving the group). It stops after "expect" accepted records (expect > 0), once the file named by an optional
 * seventh argument exists, or once idleMs pass without a
 * delivery after a first one, or 45 s without any; then it commits its acknowledgements and closes. Exit 3: the
 * 90 s limit passed first.
 */
public final class ShareProbe {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], group = args[1], topic = args[2], mode = args[3];
        int expect = Integer.parseInt(args[4]);
        long idleMs = Long.parseLong(args[5]);
        java.io.File stop = args.length > 6 ? new java.io.File(args[6]) : null;
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        props.put("group.id", group);
        props.put("client.id", "share-probe");
        props.put("share.acknowledgement.mode", "explicit");
        props.put("max.poll.records", "50");
        long start = System.currentTimeMillis(), last = -1;
        int accepted = 0;
        try (KafkaShareConsumer<String, String> c =
                 new KafkaShareConsumer<>(props, new StringDeserializer(), new StringDeserializer())) {
            c.subscribe(List.of(topic));
            while (true) {
                long now = System.currentTimeMillis();
                if (now - start > 90_000) {
                    System.out.flush();
                    System.exit(3);
                }
                if (expect > 0 && accepted >= expect) break;
                if (stop != null && stop.exists()) break;
                if (expect <= 0 && last >= 0 && now - last > idleMs) break;
                if (expect <= 0 && last < 0 && now - start > 45_000) break;
                ConsumerRecords<String, String> records = c.poll(Duration.ofMillis(200));
                if (records.isEmpty()) continue;
                last = System.currentTimeMillis();
                for (ConsumerRecord<String, String> r : records) {
                    int count = r.deliveryCount().map(Short::intValue).orElse(-1);
                    System.out.println(r.partition() + " " + r.offset() + " " + count + " " + r.value());
                    if (mode.equals("hold")) continue;
                    boolean release = mode.equals("release-all") ? !"sentinel".equals(r.value())
                        : mode.equals("release-first") && count == 1;
                    c.acknowledge(r, release ? AcknowledgeType.RELEASE : AcknowledgeType.ACCEPT);
                    if (!release) accepted++;
                }
                if (mode.equals("hold")) {
                    System.out.flush();
                    Runtime.getRuntime().halt(0);
                }
            }
            c.commitSync();
        }
        System.out.flush();
    }
}
