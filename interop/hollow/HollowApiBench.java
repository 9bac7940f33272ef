/*
 * The Java Hollow side of bench/hollow_api.py: HollowProducer cycles and HollowConsumer refreshes on the same
 * dataset as the Python side, over a filesystem blob store.
 *
 *   java HollowApiBench produce DIR N CYCLES   cycle 1 adds N items (see HollowBench.item()); every later cycle changes 1 %
 *                                              of them (i % 100 == 0 get the cycle number); the producer's
 *                                              defaults (integrity check, a snapshot every cycle, 16 MB shards).
 *                                              Prints one JSON line per cycle.
 *   java HollowApiBench consume DIR V1 V2      a HollowConsumer loads V1, then refreshes to V2 (cold), back to V1
 *                                              and to V2 again (warm); prints one JSON line.
 */

import com.netflix.hollow.api.consumer.HollowConsumer;
import com.netflix.hollow.api.consumer.fs.HollowFilesystemBlobRetriever;
import com.netflix.hollow.api.producer.HollowProducer;
import com.netflix.hollow.api.producer.fs.HollowFilesystemAnnouncer;
import com.netflix.hollow.api.producer.fs.HollowFilesystemPublisher;
import java.io.File;
import java.lang.management.ManagementFactory;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.concurrent.atomic.AtomicLong;

public class HollowApiBench {

    // The dataset is HollowBench's (Item, item()): the two benchmarks measure the same records.

    public static void main(String[] args) throws Exception {
        if (args[0].equals("produce"))
            produce(Paths.get(args[1]), Integer.parseInt(args[2]), Integer.parseInt(args[3]));
        else
            consume(Paths.get(args[1]), Long.parseLong(args[2]), Long.parseLong(args[3]));
    }

    static void produce(Path dir, int n, int cycles) {
        AtomicLong next = new AtomicLong(1);
        HollowProducer producer = HollowProducer.withPublisher(new HollowFilesystemPublisher(dir))
                .withAnnouncer(new HollowFilesystemAnnouncer(dir))
                .withVersionMinter(next::getAndIncrement)
                .build();
        producer.initializeDataModel(HollowBench.Item.class);
        for (int cycle = 1; cycle <= cycles; cycle++) {
            final int c = cycle;
            long[] populate = new long[1];
            long cpu0 = cpuNanos();
            long t0 = System.nanoTime();
            long v = producer.runCycle(state -> {
                long p0 = System.nanoTime();
                for (int i = 0; i < n; i++)
                    state.add(HollowBench.item(i, c > 1 && i % 100 == 0 ? c : 1));
                populate[0] = System.nanoTime() - p0;
            });
            long took = System.nanoTime() - t0;
            long cpu = cpuNanos() - cpu0;
            long delta = c > 1 ? new File(dir.toFile(), "delta-" + (v - 1) + "-" + v).length() : 0;
            long snapshot = new File(dir.toFile(), "snapshot-" + v).length();
            System.out.printf("{\"cycle\": %d, \"version\": %d, \"cycle_s\": %.6f, \"cycle_cpu_s\": %.6f, "
                    + "\"populate_s\": %.6f, \"delta_bytes\": %d, \"snapshot_bytes\": %d}%n", c, v, took / 1e9,
                    cpu / 1e9, populate[0] / 1e9, delta, snapshot);
        }
    }

    /** CPU time of the whole JVM (all threads: the producer's, JIT compilers', the garbage collector's). */
    static long cpuNanos() {
        return ((com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean())
                .getProcessCpuTime();
    }

    static long usedHeap() {
        Runtime rt = Runtime.getRuntime();
        for (int i = 0; i < 4; i++) {
            System.gc();
            try {
                Thread.sleep(50);
            } catch (InterruptedException e) {
                throw new RuntimeException(e);
            }
        }
        return rt.totalMemory() - rt.freeMemory();
    }

    static long allocated() {
        return ((com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean()).getCurrentThreadAllocatedBytes();
    }

    static void consume(Path dir, long v1, long v2) {
        HollowConsumer consumer = HollowConsumer.withBlobRetriever(new HollowFilesystemBlobRetriever(dir)).build();
        consumer.triggerRefreshTo(v1);
        long heap0 = usedHeap();
        long a0 = allocated();
        long t0 = System.nanoTime();
        consumer.triggerRefreshTo(v2);
        double cold = (System.nanoTime() - t0) / 1e9;
        long allocatedCold = allocated() - a0;
        long heap1 = usedHeap();
        consumer.triggerRefreshTo(v1);
        long a1 = allocated();
        t0 = System.nanoTime();
        consumer.triggerRefreshTo(v2);
        double warm = (System.nanoTime() - t0) / 1e9;
        long allocatedWarm = allocated() - a1;
        if (consumer.getCurrentVersionId() != v2)
            throw new IllegalStateException("did not reach " + v2);
        System.out.printf("{\"refresh_cold_s\": %.6f, \"refresh_warm_s\": %.6f, \"heap_before_bytes\": %d, "
                        + "\"heap_after_bytes\": %d, \"allocated_cold_bytes\": %d, \"allocated_warm_bytes\": %d}%n",
                cold, warm, heap0, heap1, allocatedCold, allocatedWarm);
    }
}
