/*
 * The Java Hollow side of bench/hollow_core.py: writes the benchmark dataset and measures Java Hollow on it.
 *
 *   java HollowBench write N DIR            snapshot-1, snapshot-2, delta-1-2 of N items (see item() below;
 *                                           bench/hollow_core.py generates the same items in Python)
 *   java HollowBench measure DIR KEYS_FILE  load, heap, primary-key lookup + one field, full record reads
 *                                           and delta apply; prints one JSON object
 *
 * KEYS_FILE holds the lookup keys as little-endian int32.  Timings are of a warm JVM (each measured loop
 * runs once before it is timed); the delta is applied to a fresh load, then timed again after a reverse
 * delta, and both are reported.
 */

import com.netflix.hollow.core.index.HollowPrimaryKeyIndex;
import com.netflix.hollow.core.read.HollowBlobInput;
import com.netflix.hollow.core.read.engine.HollowBlobReader;
import com.netflix.hollow.core.read.engine.HollowReadStateEngine;
import com.netflix.hollow.core.read.engine.list.HollowListTypeReadState;
import com.netflix.hollow.core.read.engine.object.HollowObjectTypeReadState;
import com.netflix.hollow.core.write.HollowBlobWriter;
import com.netflix.hollow.core.write.HollowWriteStateEngine;
import com.netflix.hollow.core.write.objectmapper.HollowInline;
import com.netflix.hollow.core.write.objectmapper.HollowObjectMapper;
import com.netflix.hollow.core.write.objectmapper.HollowPrimaryKey;
import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.File;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.List;

public class HollowBench {

    @HollowPrimaryKey(fields = {"id"})
    public static class Item {
        int id;
        int a;
        int b;
        int c;
        int d;
        long ts;
        @HollowInline String name;
        List<Integer> scores;
    }

    /** Keep in step with bench/hollow_core.py item(). */
    static Item item(int i, int version) {
        Item it = new Item();
        it.id = i;
        it.a = (int) (((long) i * 31) % 1000003) + (version - 1);
        it.b = i % 97;
        it.c = (i * 7) ^ 0x5a5a;
        it.d = -i;
        it.ts = 1600000000000L + (long) i * 1000;
        it.name = "item-" + i;
        it.scores = new ArrayList<>();
        it.scores.add(i % 50);
        it.scores.add((i >> 3) % 50);
        it.scores.add((i * 11) % 50);
        return it;
    }

    static boolean removed(int i) {
        return i % 200 == 1;
    }

    static boolean modified(int i) {
        return i % 100 == 0;
    }

    public static void main(String[] args) throws Exception {
        if (args[0].equals("write"))
            write(Integer.parseInt(args[1]), new File(args[2]));
        else
            measure(new File(args[1]), new File(args[2]));
    }

    static void write(int n, File dir) throws IOException {
        dir.mkdirs();
        HollowWriteStateEngine engine = new HollowWriteStateEngine();
        engine.setTargetMaxTypeShardSize(16L * 1024 * 1024);  // the producer's default
        HollowObjectMapper mapper = new HollowObjectMapper(engine);
        mapper.initializeTypeState(Item.class);
        for (int i = 0; i < n; i++)
            mapper.add(item(i, 1));
        HollowBlobWriter writer = new HollowBlobWriter(engine);
        try (OutputStream os = new BufferedOutputStream(new FileOutputStream(new File(dir, "snapshot-1")))) {
            writer.writeSnapshot(os);
        }
        engine.prepareForNextCycle();
        for (int i = 0; i < n + n / 200; i++) {
            if (i < n && removed(i))
                continue;
            mapper.add(item(i, modified(i) ? 2 : 1));
        }
        try (OutputStream os = new BufferedOutputStream(new FileOutputStream(new File(dir, "snapshot-2")))) {
            writer.writeSnapshot(os);
        }
        try (OutputStream os = new BufferedOutputStream(new FileOutputStream(new File(dir, "delta-1-2")))) {
            writer.writeDelta(os);
        }
        try (OutputStream os = new BufferedOutputStream(new FileOutputStream(new File(dir, "reversedelta-2-1")))) {
            writer.writeReverseDelta(os);
        }
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

    static HollowReadStateEngine load(File f) throws IOException {
        HollowReadStateEngine engine = new HollowReadStateEngine();
        try (InputStream in = new BufferedInputStream(new FileInputStream(f), 1 << 16)) {
            new HollowBlobReader(engine).readSnapshot(HollowBlobInput.serial(in));
        }
        return engine;
    }

    static void delta(HollowReadStateEngine engine, File f) throws IOException {
        try (InputStream in = new BufferedInputStream(new FileInputStream(f), 1 << 16)) {
            new HollowBlobReader(engine).applyDelta(HollowBlobInput.serial(in));
        }
    }

    static long sink;

    static double lookups(HollowPrimaryKeyIndex index, HollowObjectTypeReadState items, int[] keys, int nameField) {
        long t0 = System.nanoTime();
        long acc = 0;
        for (int k : keys) {
            int o = index.getMatchingOrdinal(k);
            acc += items.readString(o, nameField).length();
        }
        sink += acc;
        return (System.nanoTime() - t0) / 1e9;
    }

    static double fullReads(HollowPrimaryKeyIndex index, HollowObjectTypeReadState items, HollowListTypeReadState lists,
                            HollowObjectTypeReadState ints, int[] keys) {
        long t0 = System.nanoTime();
        long acc = 0;
        for (int k : keys) {
            int o = index.getMatchingOrdinal(k);
            acc += items.readInt(o, 0) + items.readInt(o, 1) + items.readInt(o, 2) + items.readInt(o, 3)
                    + items.readInt(o, 4) + items.readLong(o, 5) + items.readString(o, 6).length();
            int list = items.readOrdinal(o, 7);
            for (int j = 0; j < lists.size(list); j++)
                acc += ints.readInt(lists.getElementOrdinal(list, j), 0);
        }
        sink += acc;
        return (System.nanoTime() - t0) / 1e9;
    }

    static void measure(File dir, File keysFile) throws Exception {
        byte[] raw = Files.readAllBytes(keysFile.toPath());
        ByteBuffer bb = ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN);
        int[] keys = new int[raw.length / 4];
        for (int i = 0; i < keys.length; i++)
            keys[i] = bb.getInt();
        // warm the reader up once, then measure a fresh load
        load(new File(dir, "snapshot-1"));
        long heap0 = usedHeap();
        long t0 = System.nanoTime();
        HollowReadStateEngine engine = load(new File(dir, "snapshot-1"));
        double loadS = (System.nanoTime() - t0) / 1e9;
        long heapData = usedHeap() - heap0;
        t0 = System.nanoTime();
        HollowPrimaryKeyIndex index = new HollowPrimaryKeyIndex(engine, "Item", "id");
        double indexS = (System.nanoTime() - t0) / 1e9;
        long heapTotal = usedHeap() - heap0;
        HollowObjectTypeReadState items = (HollowObjectTypeReadState) engine.getTypeState("Item");
        HollowListTypeReadState lists = (HollowListTypeReadState) engine.getTypeState("ListOfInteger");
        HollowObjectTypeReadState ints = (HollowObjectTypeReadState) engine.getTypeState("Integer");
        int nameField = items.getSchema().getPosition("name");
        lookups(index, items, keys, nameField);
        double lookupS = lookups(index, items, keys, nameField);
        fullReads(index, items, lists, ints, keys);
        double fullS = fullReads(index, items, lists, ints, keys);
        t0 = System.nanoTime();
        delta(engine, new File(dir, "delta-1-2"));
        double deltaColdS = (System.nanoTime() - t0) / 1e9;
        delta(engine, new File(dir, "reversedelta-2-1"));
        t0 = System.nanoTime();
        delta(engine, new File(dir, "delta-1-2"));
        double deltaWarmS = (System.nanoTime() - t0) / 1e9;
        System.out.printf(
                "{\"load_s\": %.6f, \"heap_data_bytes\": %d, \"heap_with_index_bytes\": %d, \"index_build_s\": %.6f, "
                        + "\"lookups\": %d, \"lookup_field_s\": %.6f, \"full_read_s\": %.6f, "
                        + "\"delta_apply_cold_s\": %.6f, \"delta_apply_warm_s\": %.6f, \"sink\": %d}%n",
                loadS, heapData, heapTotal, indexS, keys.length, lookupS, fullS, deltaColdS, deltaWarmS, sink);
    }
}
