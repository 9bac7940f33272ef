import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaShareConsumer;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * One share-group member reading a topic as fast as it can, for bench/share_groups.py (loosely against Apache
 * Kafka).
 *
 * <p>Arguments: bootstrap group topic expect mode. First sets the group's share.auto.offset.reset to earliest, then
 * polls with the client's defaults until "expect" records came, acknowledging them the way "mode" says: implicit
 * (the default acknowledgement mode: each poll accepts the previous poll's records) or explicit (ACCEPT each record,
 * then commitSync after each poll). Prints "records millis firstMillis": the time from the first record received
 * to the last one acknowledged, and from the first poll to the first record (joining the group and the first
 * fetch). Exit 3: 300 s passed first.
 */
public final class ShareBench {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], group = args[1], topic = args[2], mode = args[4];
        long expect = Long.parseLong(args[3]);
        Properties admin = new Properties();
        admin.put("bootstrap.servers", bootstrap);
        try (Admin a = Admin.create(admin)) {
            ConfigResource resource = new ConfigResource(ConfigResource.Type.GROUP, group);
            AlterConfigOp op = new AlterConfigOp(new ConfigEntry("share.auto.offset.reset", "earliest"),
                AlterConfigOp.OpType.SET);
            a.incrementalAlterConfigs(Map.of(resource, List.of(op))).all().get();
        }
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        props.put("group.id", group);
        props.put("client.id", "share-bench");
        boolean explicit = mode.equals("explicit");
        props.put("share.acknowledgement.mode", explicit ? "explicit" : "implicit");
        long seen = 0, start = System.nanoTime(), first = -1;
        try (KafkaShareConsumer<byte[], byte[]> c =
                 new KafkaShareConsumer<>(props, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            c.subscribe(List.of(topic));
            while (seen < expect) {
                if (System.nanoTime() - start > 300_000_000_000L) {
                    System.out.println(seen + " -1 -1");
                    System.out.flush();
                    System.exit(3);
                }
                ConsumerRecords<byte[], byte[]> records = c.poll(Duration.ofMillis(500));
                if (first < 0 && !records.isEmpty()) first = System.nanoTime();
                seen += records.count();
                if (explicit && !records.isEmpty()) {
                    records.forEach(c::acknowledge);
                    c.commitSync();
                }
            }
            c.commitSync();  // the last poll's records (implicit mode accepts them here)
            System.out.println(seen + " " + (System.nanoTime() - first) / 1_000_000 + " " + (first - start) / 1_000_000);
        }
        System.out.flush();
    }
}
