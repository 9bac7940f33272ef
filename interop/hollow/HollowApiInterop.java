/*
 * The Java side of loosely's Hollow producer/consumer interoperability tests (tests/compat/hollow/test_api_java.py).
 * It uses only the published com.netflix.hollow:hollow jar: HollowProducer / HollowConsumer with the filesystem
 * publisher, announcer, blob retriever and announcement watcher.
 *
 *   java HollowApiInterop produce DIR FIRST_VERSION CYCLES SEED
 *        a HollowProducer over DIR: restores from DIR's announced.version when there is one (continuing the
 *        delta chain of whoever produced it), then runs CYCLES cycles with versions FIRST_VERSION, +1, ...
 *        of the Catalog model below, changing a few records per cycle (java.util.Random(SEED)).
 *        Prints "announced <version>" per cycle.
 *   java HollowApiInterop consume DIR VERSION...
 *        a HollowConsumer over DIR refreshes to each VERSION in turn (triggerRefreshTo) and prints, per version,
 *        "=== <version> snapshots=<n> deltas=<m>" (transitions applied so far, counted by a refresh listener)
 *        followed by HollowInterop's dump of the state.  With no VERSION it follows announced.version once.
 *
 * The Catalog model is mirrored in Python by tests/compat/hollow/test_api_java.py (same schemas).
 */

import com.netflix.hollow.api.consumer.HollowConsumer;
import com.netflix.hollow.api.consumer.fs.HollowFilesystemAnnouncementWatcher;
import com.netflix.hollow.api.consumer.fs.HollowFilesystemBlobRetriever;
import com.netflix.hollow.api.producer.HollowProducer;
import com.netflix.hollow.api.producer.fs.HollowFilesystemAnnouncer;
import com.netflix.hollow.api.producer.fs.HollowFilesystemPublisher;
import com.netflix.hollow.core.read.engine.HollowReadStateEngine;
import com.netflix.hollow.core.write.objectmapper.HollowInline;
import com.netflix.hollow.core.write.objectmapper.HollowPrimaryKey;
import java.io.FileOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Random;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

public class HollowApiInterop {

    public static class Actor {
        int id;
        @HollowInline String name;

        Actor(int id, String name) {
            this.id = id;
            this.name = name;
        }
    }

    @HollowPrimaryKey(fields = {"id"})
    public static class Movie {
        int id;
        String title;
        int year;
        List<Actor> actors;
        Set<String> tags;
    }

    static Movie movie(int id, int generation) {
        Movie m = new Movie();
        m.id = id;
        m.title = "title " + id + " g" + generation;
        m.year = 1950 + id % 70;
        m.actors = new ArrayList<>();
        for (int a = 0; a < id % 3 + 1; a++)
            m.actors.add(new Actor((id + a) % 11, "actor " + (id + a) % 11));
        m.tags = new HashSet<>();
        m.tags.add("t" + id % 4);
        m.tags.add("g" + generation % 3);
        return m;
    }

    public static void main(String[] args) throws Exception {
        PrintStream out = new PrintStream(new FileOutputStream(java.io.FileDescriptor.out), false, "UTF-8");
        if (args[0].equals("produce"))
            produce(out, Paths.get(args[1]), Long.parseLong(args[2]), Integer.parseInt(args[3]), Long.parseLong(args[4]));
        else if (args[0].equals("consume"))
            consume(out, Paths.get(args[1]), java.util.Arrays.copyOfRange(args, 2, args.length));
        else
            throw new IllegalArgumentException("unknown command " + args[0]);
        out.flush();
    }

    static void produce(PrintStream out, Path dir, long firstVersion, int cycles, long seed) throws Exception {
        AtomicLong next = new AtomicLong(firstVersion);
        HollowProducer producer = HollowProducer.withPublisher(new HollowFilesystemPublisher(dir))
                .withAnnouncer(new HollowFilesystemAnnouncer(dir))
                .withVersionMinter(next::getAndIncrement)
                .build();
        producer.initializeDataModel(Movie.class);
        Path announced = dir.resolve("announced.version");
        TreeMap<Integer, Movie> movies = new TreeMap<>();
        if (Files.exists(announced)) {
            long version = Long.parseLong(new String(Files.readAllBytes(announced), StandardCharsets.US_ASCII).trim());
            HollowProducer.ReadState restored = producer.restore(version, new HollowFilesystemBlobRetriever(dir));
            // Carry the restored records over: re-add them as POJOs, read with the generic API.
            HollowReadStateEngine engine = restored.getStateEngine();
            com.netflix.hollow.api.objects.generic.GenericHollowObject m;
            for (int o = engine.getTypeState("Movie").getPopulatedOrdinals().nextSetBit(0); o >= 0;
                 o = engine.getTypeState("Movie").getPopulatedOrdinals().nextSetBit(o + 1)) {
                m = new com.netflix.hollow.api.objects.generic.GenericHollowObject(engine, "Movie", o);
                movies.put(m.getInt("id"), fromGeneric(m));
            }
        }
        Random r = new Random(seed);
        for (int c = 0; c < cycles; c++) {
            for (int k = 0; k < 5; k++) {
                int id = r.nextInt(60);
                if (movies.containsKey(id) && r.nextInt(4) == 0)
                    movies.remove(id);
                else
                    movies.put(id, movie(id, c + (int) (seed % 7)));
            }
            long v = producer.runCycle(state -> {
                for (Movie m : movies.values())
                    state.add(m);
            });
            out.println("announced " + v);
        }
    }

    static Movie fromGeneric(com.netflix.hollow.api.objects.generic.GenericHollowObject g) {
        Movie m = new Movie();
        m.id = g.getInt("id");
        m.title = g.getObject("title").getString("value");
        m.year = g.getInt("year");
        m.actors = new ArrayList<>();
        for (com.netflix.hollow.api.objects.generic.GenericHollowObject a : g.getList("actors").objects())
            m.actors.add(new Actor(a.getInt("id"), a.getString("name")));
        m.tags = new HashSet<>();
        for (com.netflix.hollow.api.objects.generic.GenericHollowObject t : g.getSet("tags").objects())
            m.tags.add(t.getString("value"));
        return m;
    }

    static void consume(PrintStream out, Path dir, String[] versions) throws Exception {
        AtomicInteger snapshots = new AtomicInteger();
        AtomicInteger deltas = new AtomicInteger();
        HollowConsumer.AbstractRefreshListener counter = new HollowConsumer.AbstractRefreshListener() {
            @Override
            public void snapshotUpdateOccurred(com.netflix.hollow.api.custom.HollowAPI api,
                                               HollowReadStateEngine stateEngine, long version) {
                snapshots.incrementAndGet();
            }

            @Override
            public void deltaUpdateOccurred(com.netflix.hollow.api.custom.HollowAPI api,
                                            HollowReadStateEngine stateEngine, long version) {
                deltas.incrementAndGet();
            }
        };
        HollowConsumer.Builder<?> builder = HollowConsumer.withBlobRetriever(new HollowFilesystemBlobRetriever(dir))
                .withRefreshListener(counter);
        if (versions.length == 0)
            builder = builder.withAnnouncementWatcher(new HollowFilesystemAnnouncementWatcher(dir));
        HollowConsumer consumer = builder.build();
        if (versions.length == 0) {
            consumer.triggerRefresh();
            report(out, consumer, snapshots, deltas);
        }
        for (String v : versions) {
            consumer.triggerRefreshTo(Long.parseLong(v));
            report(out, consumer, snapshots, deltas);
        }
    }

    static void report(PrintStream out, HollowConsumer consumer, AtomicInteger snapshots, AtomicInteger deltas) {
        out.print("=== " + consumer.getCurrentVersionId() + " snapshots=" + snapshots.get() + " deltas=" + deltas.get() + "\n");
        out.print(HollowInterop.dump(consumer.getStateEngine()));
    }
}
