// Consumer groups, committed offsets and transactions with Apache Kafka's Java clients, and Kafka's own decoders for
// the internal topics, for loosely's compatibility tests. One line of output per fact, so runs against loosely and
// against Apache Kafka compare line by line.
//
//   group-consume <bootstrap> <topic> <group> <count> [classic|consumer]
//                                                       default consumer settings but the group protocol; subscribe,
//                                                       read <count> records, commitSync
//                                                       -> "<partition> <offset> <value>" per record
//   committed <bootstrap> <topic> <group> <partitions>  -> "<partition> <offset>" per partition (-1: none)
//   dump-offsets <bootstrap>                            __consumer_offsets through GroupCoordinatorRecordSerde:
//                                                       "offset <group> <topic> <partition> <offset>" |
//                                                       "group <group> <protocolType> <generation> <members>" |
//                                                       "delete-offset ..." | "delete-group <group>" |
//                                                       KIP-848: "consumer-epoch <group> <epoch>" |
//                                                       "consumer-member <group> <member> <classic|consumer>" |
//                                                       "consumer-current <group> <member> <epoch> <state> <partitions>"
//                                                       | "consumer-target <group> <member> <partitions>" |
//                                                       "consumer-target-epoch <group> <epoch>"; "delete-<that> ..."
//   transactions-v2 <bootstrap> <txnId> <topic> <group> <count> <commit|abort>[,...]
//                                                       what a Java 4.x producer does with transactions version 2
//                                                       where the broker finalizes it: per outcome a transaction of
//                                                       <count> records and sendOffsetsToTransaction(<group>,
//                                                       <topic>-0 at 10 * (i + 1)) -> "<outcome> done"; then
//                                                       "epoch-advance <n>" (DescribeTransactions), a second
//                                                       producer fences the first mid-transaction -> "fenced <class>"
//                                                       and commits <count> "b-" records -> "b commit done";
//                                                       "committed <offset>" of <group>, "visible <value>" per
//                                                       record a read_committed consumer reads, "aborted-in-log
//                                                       <n>" (what read_uncommitted sees of aborts), and "log <state>
//                                                       <clientTransactionVersion>" for <txnId>'s last record in
//                                                       __transaction_state, through TransactionCoordinatorRecordSerde
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.coordinator.common.runtime.CoordinatorRecord;
import org.apache.kafka.coordinator.group.GroupCoordinatorRecordSerde;
import org.apache.kafka.coordinator.group.generated.*;
import org.apache.kafka.coordinator.transaction.TransactionCoordinatorRecordSerde;
import org.apache.kafka.coordinator.transaction.generated.TransactionLogKey;
import org.apache.kafka.coordinator.transaction.generated.TransactionLogValue;

public class GroupsProbe {
    public static void main(String[] args) throws Exception {
        switch (args[0]) {
            case "group-consume" -> groupConsume(args[1], args[2], args[3], Integer.parseInt(args[4]),
                    args.length > 5 ? args[5] : "classic");
            case "committed" -> committed(args[1], args[2], args[3], Integer.parseInt(args[4]));
            case "dump-offsets" -> dumpOffsets(args[1]);
            case "transactions-v2" -> transactionsV2(args[1], args[2], args[3], args[4], Integer.parseInt(args[5]),
                    args[6]);
            default -> throw new IllegalArgumentException(args[0]);
        }
    }

    static Properties consumerProps(String bootstrap, String group) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        if (group != null) {
            p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        }
        return p;
    }

    static void groupConsume(String bootstrap, String topic, String group, int count, String protocol) {
        Properties p = consumerProps(bootstrap, group);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol);
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(p)) {
            c.subscribe(List.of(topic));
            int seen = 0;
            long deadline = System.currentTimeMillis() + 60_000;
            // Where each partition's processing stopped: after the last printed record, or at the first record
            // returned but not printed. With default settings close() auto-commits the position, so the position is
            // rewound there too.
            Map<TopicPartition, OffsetAndMetadata> next = new HashMap<>();
            while (seen < count && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                    TopicPartition tp = new TopicPartition(r.topic(), r.partition());
                    if (seen == count) {
                        next.putIfAbsent(tp, new OffsetAndMetadata(r.offset()));
                        continue;
                    }
                    System.out.println(r.partition() + " " + r.offset() + " " + r.value());
                    next.put(tp, new OffsetAndMetadata(r.offset() + 1));
                    seen++;
                }
            }
            next.forEach((tp, om) -> c.seek(tp, om.offset()));
            c.commitSync(next);
        }
    }

    static void committed(String bootstrap, String topic, String group, int partitions) {
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(bootstrap, group))) {
            Set<TopicPartition> tps = new HashSet<>();
            for (int i = 0; i < partitions; i++) {
                tps.add(new TopicPartition(topic, i));
            }
            Map<TopicPartition, OffsetAndMetadata> m = c.committed(tps, Duration.ofSeconds(30));
            for (int i = 0; i < partitions; i++) {
                OffsetAndMetadata o = m.get(new TopicPartition(topic, i));
                System.out.println(i + " " + (o == null ? -1 : o.offset()));
            }
        }
    }

    static List<ConsumerRecord<byte[], byte[]>> readAll(String bootstrap, String topic) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        List<ConsumerRecord<byte[], byte[]>> out = new ArrayList<>();
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(p)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (PartitionInfo pi : c.partitionsFor(topic, Duration.ofSeconds(30))) {
                tps.add(new TopicPartition(topic, pi.partition()));
            }
            c.assign(tps);
            c.seekToBeginning(tps);
            Map<TopicPartition, Long> end = c.endOffsets(tps);
            long deadline = System.currentTimeMillis() + 60_000;
            while (System.currentTimeMillis() < deadline) {
                boolean done = true;
                for (TopicPartition tp : tps) {
                    if (c.position(tp) < end.get(tp)) {
                        done = false;
                    }
                }
                if (done) {
                    break;
                }
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(200))) {
                    out.add(r);
                }
            }
        }
        return out;
    }

    static void dumpOffsets(String bootstrap) {
        GroupCoordinatorRecordSerde serde = new GroupCoordinatorRecordSerde();
        for (ConsumerRecord<byte[], byte[]> r : readAll(bootstrap, "__consumer_offsets")) {
            CoordinatorRecord rec = serde.deserialize(
                    ByteBuffer.wrap(r.key()), r.value() == null ? null : ByteBuffer.wrap(r.value()));
            Object key = rec.key();
            Object value = rec.value() == null ? null : rec.value().message();
            if (key instanceof OffsetCommitKey k) {
                if (value == null) {
                    System.out.println("delete-offset " + k.group() + " " + k.topic() + " " + k.partition());
                } else {
                    System.out.println("offset " + k.group() + " " + k.topic() + " " + k.partition() + " "
                            + ((OffsetCommitValue) value).offset());
                }
            } else if (key instanceof GroupMetadataKey k) {
                if (value == null) {
                    System.out.println("delete-group " + k.group());
                } else {
                    GroupMetadataValue v = (GroupMetadataValue) value;
                    System.out.println("group " + k.group() + " " + v.protocolType() + " " + v.generation() + " "
                            + v.members().size());
                }
            } else if (key instanceof ConsumerGroupMetadataKey k) {
                System.out.println(value == null ? "delete-consumer-epoch " + k.groupId()
                        : "consumer-epoch " + k.groupId() + " " + ((ConsumerGroupMetadataValue) value).epoch());
            } else if (key instanceof ConsumerGroupTargetAssignmentMetadataKey k) {
                System.out.println(value == null ? "delete-consumer-target-epoch " + k.groupId()
                        : "consumer-target-epoch " + k.groupId() + " "
                        + ((ConsumerGroupTargetAssignmentMetadataValue) value).assignmentEpoch());
            } else if (key instanceof ConsumerGroupMemberMetadataKey k) {
                String who = k.groupId() + " " + k.memberId();
                System.out.println(value == null ? "delete-consumer-member " + who : "consumer-member " + who + " "
                        + (((ConsumerGroupMemberMetadataValue) value).classicMemberMetadata() != null
                            ? "classic" : "consumer"));
            } else if (key instanceof ConsumerGroupTargetAssignmentMemberKey k) {
                String who = k.groupId() + " " + k.memberId();
                if (value == null) {
                    System.out.println("delete-consumer-target " + who);
                } else {
                    int n = 0;
                    for (var t : ((ConsumerGroupTargetAssignmentMemberValue) value).topicPartitions()) {
                        n += t.partitions().size();
                    }
                    System.out.println("consumer-target " + who + " " + n);
                }
            } else if (key instanceof ConsumerGroupCurrentMemberAssignmentKey k) {
                String who = k.groupId() + " " + k.memberId();
                if (value == null) {
                    System.out.println("delete-consumer-current " + who);
                } else {
                    ConsumerGroupCurrentMemberAssignmentValue v = (ConsumerGroupCurrentMemberAssignmentValue) value;
                    int n = 0;
                    for (var t : v.assignedPartitions()) {
                        n += t.partitions().size();
                    }
                    System.out.println("consumer-current " + who + " " + v.memberEpoch() + " " + v.state() + " " + n);
                }
            }
        }
    }

    static KafkaProducer<String, String> transactionalProducer(String bootstrap, String txnId) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, txnId);
        return new KafkaProducer<>(p);
    }

    static int epochOf(Admin admin, String txnId) throws Exception {
        return admin.describeTransactions(List.of(txnId)).description(txnId).get().producerEpoch();
    }

    static void transactionsV2(String bootstrap, String txnId, String topic, String group, int count,
                               String outcomes) throws Exception {
        TopicPartition offsetsOf = new TopicPartition(topic, 0);
        try (Admin admin = Admin.create(Map.<String, Object>of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap));
             KafkaProducer<String, String> a = transactionalProducer(bootstrap, txnId)) {
            a.initTransactions();
            int before = epochOf(admin, txnId);
            String[] each = outcomes.split(",");
            for (int i = 0; i < each.length; i++) {
                a.beginTransaction();
                for (int j = 0; j < count; j++) {
                    a.send(new ProducerRecord<>(topic, "k" + j, i + "-" + each[i] + "-" + j));
                }
                a.sendOffsetsToTransaction(Map.of(offsetsOf, new OffsetAndMetadata(10L * (i + 1))),
                        new ConsumerGroupMetadata(group));
                a.flush();  // the records reach the log, so an abort has something to abort
                if (each[i].equals("commit")) {
                    a.commitTransaction();
                } else {
                    a.abortTransaction();
                }
                System.out.println(each[i] + " done");
            }
            // Transactions version 2 bumps the epoch at every EndTxn; version 1 only at InitProducerId.
            System.out.println("epoch-advance " + (epochOf(admin, txnId) - before));
            a.beginTransaction();
            a.send(new ProducerRecord<>(topic, "z", "zombie"));
            a.flush();
            try (KafkaProducer<String, String> b = transactionalProducer(bootstrap, txnId)) {
                b.initTransactions();  // aborts what the first producer left open, under an epoch it cannot use
                try {
                    a.commitTransaction();
                    System.out.println("not fenced");
                } catch (KafkaException e) {
                    System.out.println("fenced " + e.getClass().getSimpleName());
                }
                b.beginTransaction();
                for (int j = 0; j < count; j++) {
                    b.send(new ProducerRecord<>(topic, "k" + j, "b-" + j));
                }
                b.commitTransaction();
                System.out.println("b commit done");
            }
        }
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(bootstrap, group))) {
            OffsetAndMetadata o = c.committed(Set.of(offsetsOf), Duration.ofSeconds(30)).get(offsetsOf);
            System.out.println("committed " + (o == null ? -1 : o.offset()));
        }
        Properties p = consumerProps(bootstrap, null);
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(p)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (PartitionInfo pi : c.partitionsFor(topic, Duration.ofSeconds(30))) {
                tps.add(new TopicPartition(topic, pi.partition()));
            }
            c.assign(tps);
            c.seekToBeginning(tps);
            Map<TopicPartition, Long> end = c.endOffsets(tps);  // the last stable offsets, for read_committed
            long deadline = System.currentTimeMillis() + 30_000;
            while (System.currentTimeMillis() < deadline && tps.stream().anyMatch(tp -> c.position(tp) < end.get(tp))) {
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                    System.out.println("visible " + r.value());
                }
            }
        }
        long aborted = readAll(bootstrap, topic).stream()
                .map(r -> new String(r.value())).filter(v -> v.contains("-abort-") || v.equals("zombie")).count();
        System.out.println("aborted-in-log " + aborted);
        TransactionCoordinatorRecordSerde serde = new TransactionCoordinatorRecordSerde();
        String last = "log none";
        for (ConsumerRecord<byte[], byte[]> r : readAll(bootstrap, "__transaction_state")) {
            CoordinatorRecord rec = serde.deserialize(
                    ByteBuffer.wrap(r.key()), r.value() == null ? null : ByteBuffer.wrap(r.value()));
            if (((TransactionLogKey) rec.key()).transactionalId().equals(txnId) && rec.value() != null) {
                TransactionLogValue v = (TransactionLogValue) rec.value().message();
                last = "log " + v.transactionStatus() + " " + v.clientTransactionVersion();
            }
        }
        System.out.println(last);
    }
}
