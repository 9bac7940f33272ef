import java.io.File;
import java.nio.file.Files;
import java.util.Properties;
import java.util.TreeSet;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.ThreadMetadata;
import org.apache.kafka.streams.TaskMetadata;
import org.apache.kafka.streams.kstream.Produced;

/**
 * A Kafka Streams application in a streams group (KIP-1071, group.protocol=streams), run by
 * tests/compat/test_streams_groups.py against loosely and Apache Kafka.
 *
 * <p>Arguments: bootstrap applicationId inputTopic outputTopic stopFile mode. The topology counts the input's
 * values by value: it re-keys each record by its value (a repartition topic) and counts per key in a state store
 * (a changelog topic), writing each new count to the output topic. It prints "state STATE" on each state change and
 * "active T1,T2,..." (task ids, sorted) whenever its active tasks change. It stops once the stop file exists: mode
 * "close" closes the application (leaving the group), mode "halt" halts the JVM at once (never leaving: the broker
 * must time the member out). Exit 3: 240 s passed first (a broker restart fits); exit 4: the application died.
 */
public final class StreamsProbe {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], appId = args[1], input = args[2], output = args[3], mode = args[5];
        File stop = new File(args[4]);
        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(StreamsConfig.GROUP_PROTOCOL_CONFIG, "streams");
        props.put(StreamsConfig.STATE_DIR_CONFIG, Files.createTempDirectory("streams-probe").toString());
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, "200");
        props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, "0");
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, "1");
        props.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        props.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        props.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");
        StreamsBuilder builder = new StreamsBuilder();
        builder.<String, String>stream(input)
            .map((k, v) -> KeyValue.pair(v, v))
            .groupByKey()
            .count()
            .toStream()
            .mapValues(Object::toString)
            .to(output, Produced.with(Serdes.String(), Serdes.String()));
        KafkaStreams streams = new KafkaStreams(builder.build(), props);
        streams.setStateListener((now, before) -> say("state " + now));
        streams.start();
        long start = System.currentTimeMillis();
        String last = null;
        while (!stop.exists()) {
            if (System.currentTimeMillis() - start > 240_000) {
                System.out.flush();
                Runtime.getRuntime().halt(3);
            }
            if (streams.state() == KafkaStreams.State.ERROR || streams.state() == KafkaStreams.State.NOT_RUNNING) {
                System.out.flush();
                Runtime.getRuntime().halt(4);
            }
            TreeSet<String> active = new TreeSet<>();
            for (ThreadMetadata t : streams.metadataForLocalThreads()) {
                for (TaskMetadata task : t.activeTasks()) active.add(task.taskId().toString());
            }
            String now = String.join(",", active);
            if (!now.equals(last)) {
                say("active " + now);
                last = now;
            }
            Thread.sleep(100);
        }
        if (mode.equals("halt")) {
            System.out.flush();
            Runtime.getRuntime().halt(0);
        }
        streams.close(java.time.Duration.ofSeconds(30));
        System.out.flush();
    }

    private static synchronized void say(String line) {
        System.out.println(line);
        System.out.flush();
    }
}
