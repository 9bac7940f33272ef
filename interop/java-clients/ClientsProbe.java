// Drives Apache Kafka's Java clients for loosely's compatibility tests. Output is one line per record so the
// Python side can compare runs against loosely and against Apache Kafka.
//
//   produce <bootstrap> <topic> <count> <compression> <idempotence:true|false>   -> "<partition> <offset> <key>"
//   consume <bootstrap> <topic> <partition> <count>                              -> "<offset> <key> <value>"
//   admin   <bootstrap> <topic> <partitions>                                     -> describe output
import java.time.Duration;
import java.util.*;
import java.util.concurrent.Future;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class ClientsProbe {
    public static void main(String[] args) throws Exception {
        switch (args[0]) {
            case "produce" -> produce(args[1], args[2], Integer.parseInt(args[3]), args[4], args[5]);
            case "consume" -> consume(args[1], args[2], Integer.parseInt(args[3]), Integer.parseInt(args[4]));
            case "admin" -> admin(args[1], args[2], Integer.parseInt(args[3]));
            default -> throw new IllegalArgumentException(args[0]);
        }
    }

    // Client properties from the file $LOOSELY_CLIENT_CONFIG, if set (security settings for secured listeners).
    static void extra(Properties p) throws java.io.IOException {
        String path = System.getenv("LOOSELY_CLIENT_CONFIG");
        if (path != null) {
            try (java.io.Reader r = java.nio.file.Files.newBufferedReader(java.nio.file.Path.of(path))) {
                p.load(r);
            }
        }
    }

    static void produce(String bootstrap, String topic, int count, String codec, String idempotence) throws Exception {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        extra(p);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
        if (!idempotence.equals("default")) {
            p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, idempotence);
        }
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            List<Future<RecordMetadata>> futures = new ArrayList<>();
            for (int i = 0; i < count; i++) {
                futures.add(producer.send(new ProducerRecord<>(topic, "key-" + i, "value-" + i)));
            }
            for (int i = 0; i < count; i++) {
                RecordMetadata m = futures.get(i).get();
                System.out.println(m.partition() + " " + m.offset() + " key-" + i);
            }
        }
    }

    static void consume(String bootstrap, String topic, int partition, int count) throws Exception {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        extra(p);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(p)) {
            TopicPartition tp = new TopicPartition(topic, partition);
            consumer.assign(List.of(tp));
            consumer.seekToBeginning(List.of(tp));
            int seen = 0;
            long deadline = System.currentTimeMillis() + 60_000;
            while (seen < count && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                    System.out.println(r.offset() + " " + r.key() + " " + r.value());
                    seen++;
                }
            }
        }
    }

    static void admin(String bootstrap, String topic, int partitions) throws Exception {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(p)) {
            admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1)
                    .configs(Map.of("retention.ms", "123456")))).all().get();
            TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
            System.out.println("partitions " + d.partitions().size());
            System.out.println("internal " + d.isInternal());
            var res = new org.apache.kafka.common.config.ConfigResource(
                    org.apache.kafka.common.config.ConfigResource.Type.TOPIC, topic);
            Config c = admin.describeConfigs(List.of(res)).all().get().get(res);
            System.out.println("retention.ms " + c.get("retention.ms").value());
            System.out.println("nodes " + admin.describeCluster().nodes().get().size());
            System.out.println("listed " + admin.listTopics().names().get().contains(topic));
            admin.deleteTopics(List.of(topic)).all().get();
            System.out.println("deleted");
        }
    }
}
