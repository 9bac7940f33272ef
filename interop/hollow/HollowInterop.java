/*
 * The Java side of loosely's Hollow interoperability suite, driven by tests/compat/hollow and by
 * tests/hollow/golden/regenerate.py.  It uses only the published com.netflix.hollow:hollow jar.
 *
 *   java HollowInterop spec  SPEC_FILE OUT_DIR       run a write-engine script (format below), writing
 *                                                    snapshot-N, delta-(N-1)-N, reversedelta-N-(N-1)
 *   java HollowInterop model NAME OUT_DIR            write a delta chain of a POJO data model with the object
 *                                                    mapper (rich, evolve, reshard, edges), plus schemas-N.txt
 *   java HollowInterop dump  OP...                   read blobs and print the exact state after every OP
 *   java HollowInterop deep  TYPE OP...              print the records of TYPE fully expanded, sorted
 *
 * An OP is snapshot:FILE or delta:FILE, optionally followed by ,part=NAME:FILE for optional blob parts.
 *
 * The dump format is the contract with the Python side (loosely.hollow.core dump_state()); keep them equal:
 *   STATE tag=<current tag>
 *   HEADER <key> <value>                       header tags sorted by key, strings escaped as below
 *   TYPE <name> shards=<n> maxOrdinal=<m>
 *   SCHEMA <schema text, escaped>
 *   POPULATED <ordinals,comma separated>
 *   GHOSTS <ordinals of previous-but-not-populated records>
 *   R <ordinal> <record>  /  G <ordinal> <record>
 *   LOOKUPS ok=<n> failed=<m>                  set/map elements found again by Java's own lookups (keys with
 *                                              a null field count as failed: Java cannot look them up)
 *   CHECKSUM <HollowChecksum hex>
 * Records: OBJECT {f=v,...} with null, ints in decimal, true/false, f<8 hex> float bits, d<16 hex> double bits,
 * "..." strings (\" \\ and \\uXXXX for UTF-16 units outside 0x20..0x7e), x<hex> bytes, @<ordinal> references;
 * LIST [e,...]; SET {bucket:e,...}; MAP {bucket:k=v,...}.
 *
 * Spec (one command per line, '#' comments; strings are hex of UTF-16 units, s-prefixed):
 *   SCHEMAS <hex of UTF-8 schema text>   declare types, in order      SHARDS <type> <n>  pin before SCHEMAS
 *   TARGET_SHARD_SIZE <bytes>            PART <name> <type>...       HEADER <s-key> <s-value>
 *   FOCUS_HOLES                          setFocusHoleFillInFewestShards(true)
 *   CYCLE <tag>                          start a cycle whose state gets this randomized tag
 *   REC <type> <value>...                add a record; it is referred to as #k (k-th REC of this cycle)
 *   KEEP_ALL                             addAllObjectsFromPreviousCycle()
 *   WRITE                                write the blobs of this cycle
 * OBJECT values in schema order: _ null, decimal INT/LONG, 1/0 BOOLEAN, 8/16 hex digits FLOAT/DOUBLE bits,
 * s<hex> STRING, x<hex> BYTES, #k REFERENCE.  LIST/SET: #k...; MAP: #k #v pairs.
 */

import com.netflix.hollow.api.producer.ProducerOptionalBlobPartConfig;
import com.netflix.hollow.core.index.key.HollowPrimaryKeyValueDeriver;
import com.netflix.hollow.core.read.HollowBlobInput;
import com.netflix.hollow.core.read.OptionalBlobPartInput;
import com.netflix.hollow.core.read.engine.HollowBlobReader;
import com.netflix.hollow.core.read.engine.HollowReadStateEngine;
import com.netflix.hollow.core.read.engine.HollowTypeReadState;
import com.netflix.hollow.core.read.engine.list.HollowListTypeReadState;
import com.netflix.hollow.core.read.engine.map.HollowMapTypeReadState;
import com.netflix.hollow.core.read.engine.object.HollowObjectTypeReadState;
import com.netflix.hollow.core.read.engine.set.HollowSetTypeReadState;
import com.netflix.hollow.core.memory.encoding.HashCodes;
import com.netflix.hollow.core.schema.HollowListSchema;
import com.netflix.hollow.core.schema.HollowMapSchema;
import com.netflix.hollow.core.schema.HollowObjectSchema;
import com.netflix.hollow.core.schema.HollowSchema;
import com.netflix.hollow.core.schema.HollowSchemaParser;
import com.netflix.hollow.core.schema.HollowSetSchema;
import com.netflix.hollow.core.write.HollowBlobWriter;
import com.netflix.hollow.core.write.HollowListTypeWriteState;
import com.netflix.hollow.core.write.HollowListWriteRecord;
import com.netflix.hollow.core.write.HollowMapTypeWriteState;
import com.netflix.hollow.core.write.HollowMapWriteRecord;
import com.netflix.hollow.core.write.HollowObjectTypeWriteState;
import com.netflix.hollow.core.write.HollowObjectWriteRecord;
import com.netflix.hollow.core.write.HollowSetTypeWriteState;
import com.netflix.hollow.core.write.HollowSetWriteRecord;
import com.netflix.hollow.core.write.HollowWriteRecord;
import com.netflix.hollow.core.write.HollowWriteStateEngine;
import com.netflix.hollow.core.write.objectmapper.HollowHashKey;
import com.netflix.hollow.core.write.objectmapper.HollowInline;
import com.netflix.hollow.core.write.objectmapper.HollowObjectMapper;
import com.netflix.hollow.core.write.objectmapper.HollowPrimaryKey;
import com.netflix.hollow.core.write.objectmapper.HollowShardLargeType;
import com.netflix.hollow.core.write.objectmapper.HollowTypeName;
import com.netflix.hollow.tools.checksum.HollowChecksum;
import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.TreeMap;

public class HollowInterop {

    public static void main(String[] args) throws Exception {
        PrintStream out = new PrintStream(new FileOutputStream(java.io.FileDescriptor.out), false, "UTF-8");
        switch (args[0]) {
            case "spec":
                runSpec(new File(args[1]), new File(args[2]));
                break;
            case "model":
                runModel(args[1], new File(args[2]));
                break;
            case "dump":
                for (String[] step : load(java.util.Arrays.copyOfRange(args, 1, args.length), HollowInterop::dump)) {
                    out.print("=== " + step[0] + "\n");
                    out.print(step[1]);
                }
                break;
            case "deep":
                for (String[] step : load(java.util.Arrays.copyOfRange(args, 2, args.length), e -> deepDump(e, args[1]))) {
                    out.print("=== " + step[0] + "\n");
                    out.print(step[1]);
                }
                break;
            default:
                throw new IllegalArgumentException("unknown command " + args[0]);
        }
        out.flush();
    }

    // ---------------------------------------------------------------------------------------------------
    // reading and dumping

    /** Apply the ops in order; after each one, render the state with `render`: [(op, text)]. */
    static List<String[]> load(String[] ops, java.util.function.Function<HollowReadStateEngine, String> render)
            throws IOException {
        HollowReadStateEngine engine = new HollowReadStateEngine(true);
        HollowBlobReader reader = new HollowBlobReader(engine);
        List<String[]> result = new ArrayList<>();
        for (String op : ops) {
            String[] pieces = op.split(",");
            String[] main = pieces[0].split(":", 2);
            OptionalBlobPartInput parts = null;
            for (int i = 1; i < pieces.length; i++) {
                String[] p = pieces[i].substring("part=".length()).split(":", 2);
                if (parts == null)
                    parts = new OptionalBlobPartInput();
                parts.addInput(p[0], new File(p[1]));
            }
            try (InputStream in = new FileInputStream(main[1])) {
                HollowBlobInput hbi = HollowBlobInput.serial(in);
                if (main[0].equals("snapshot")) {
                    engine = new HollowReadStateEngine(true);
                    reader = new HollowBlobReader(engine);
                    if (parts == null)
                        reader.readSnapshot(hbi);
                    else
                        reader.readSnapshot(hbi, parts);
                } else {
                    if (parts == null)
                        reader.applyDelta(hbi);
                    else
                        reader.applyDelta(hbi, parts);
                }
            }
            result.add(new String[] {op, render.apply(engine)});
        }
        return result;
    }

    static String dump(HollowReadStateEngine engine) {
        StringBuilder sb = new StringBuilder();
        sb.append("STATE tag=").append(engine.getCurrentRandomizedTag()).append('\n');
        for (Map.Entry<String, String> e : new TreeMap<>(engine.getHeaderTags()).entrySet())
            sb.append("HEADER ").append(quote(e.getKey())).append(' ').append(quote(e.getValue())).append('\n');
        List<String> names = new ArrayList<>();
        for (HollowTypeReadState t : engine.getTypeStates())
            names.add(t.getSchema().getName());
        Collections.sort(names);
        int[] lookups = new int[2];
        for (String name : names) {
            HollowTypeReadState t = engine.getTypeState(name);
            sb.append("TYPE ").append(name).append(" shards=").append(t.numShards())
              .append(" maxOrdinal=").append(t.maxOrdinal()).append('\n');
            sb.append("SCHEMA ").append(quote(t.getSchema().toString())).append('\n');
            BitSet populated = t.getPopulatedOrdinals();
            BitSet ghosts = (BitSet) t.getPreviousOrdinals().clone();
            ghosts.andNot(populated);
            sb.append("POPULATED ").append(ordinals(populated)).append('\n');
            sb.append("GHOSTS ").append(ordinals(ghosts)).append('\n');
            for (int o = populated.nextSetBit(0); o >= 0; o = populated.nextSetBit(o + 1)) {
                sb.append("R ").append(o).append(' ').append(record(t, o)).append('\n');
                verifyLookups(engine, t, o, lookups);
            }
            for (int o = ghosts.nextSetBit(0); o >= 0; o = ghosts.nextSetBit(o + 1))
                sb.append("G ").append(o).append(' ').append(record(t, o)).append('\n');
        }
        sb.append("LOOKUPS ok=").append(lookups[0]).append(" failed=").append(lookups[1]).append('\n');
        sb.append("CHECKSUM ").append(HollowChecksum.forStateEngine(engine)).append('\n');
        return sb.toString();
    }

    static String ordinals(BitSet bits) {
        StringBuilder sb = new StringBuilder();
        for (int o = bits.nextSetBit(0); o >= 0; o = bits.nextSetBit(o + 1)) {
            if (sb.length() > 0)
                sb.append(',');
            sb.append(o);
        }
        return sb.length() == 0 ? "-" : sb.toString();
    }

    static String record(HollowTypeReadState t, int o) {
        StringBuilder sb = new StringBuilder();
        if (t instanceof HollowObjectTypeReadState) {
            HollowObjectTypeReadState s = (HollowObjectTypeReadState) t;
            HollowObjectSchema schema = s.getSchema();
            sb.append('{');
            for (int f = 0; f < schema.numFields(); f++) {
                if (f > 0)
                    sb.append(',');
                sb.append(schema.getFieldName(f)).append('=');
                if (s.isNull(o, f)) {
                    sb.append("null");
                    continue;
                }
                switch (schema.getFieldType(f)) {
                    case INT: sb.append(s.readInt(o, f)); break;
                    case LONG: sb.append(s.readLong(o, f)); break;
                    case BOOLEAN: sb.append(s.readBoolean(o, f)); break;
                    case FLOAT: sb.append('f').append(String.format("%08x", Float.floatToRawIntBits(s.readFloat(o, f)))); break;
                    case DOUBLE: sb.append('d').append(String.format("%016x", Double.doubleToRawLongBits(s.readDouble(o, f)))); break;
                    case STRING: sb.append(quote(s.readString(o, f))); break;
                    case BYTES: sb.append('x').append(hex(s.readBytes(o, f))); break;
                    case REFERENCE: sb.append('@').append(s.readOrdinal(o, f)); break;
                }
            }
            sb.append('}');
        } else if (t instanceof HollowListTypeReadState) {
            HollowListTypeReadState s = (HollowListTypeReadState) t;
            sb.append('[');
            for (int i = 0; i < s.size(o); i++) {
                if (i > 0)
                    sb.append(',');
                sb.append(s.getElementOrdinal(o, i));
            }
            sb.append(']');
        } else if (t instanceof HollowSetTypeReadState) {
            HollowSetTypeReadState s = (HollowSetTypeReadState) t;
            int buckets = HashCodes.hashTableSize(s.size(o));
            sb.append('{');
            boolean first = true;
            for (int b = 0; b < buckets; b++) {
                int e = s.relativeBucketValue(o, b);
                if (e < 0)
                    continue;
                if (!first)
                    sb.append(',');
                first = false;
                sb.append(b).append(':').append(e);
            }
            sb.append('}');
        } else {
            HollowMapTypeReadState s = (HollowMapTypeReadState) t;
            int buckets = HashCodes.hashTableSize(s.size(o));
            sb.append('{');
            boolean first = true;
            for (int b = 0; b < buckets; b++) {
                long kv = s.relativeBucket(o, b);
                if (kv == -1L)
                    continue;
                if (!first)
                    sb.append(',');
                first = false;
                sb.append(b).append(':').append((int) (kv >>> 32)).append('=').append((int) kv);
            }
            sb.append('}');
        }
        return sb.toString();
    }

    /** Every element of a set/map must be found again by Java's own lookup paths (plain and hash-keyed). */
    static void verifyLookups(HollowReadStateEngine engine, HollowTypeReadState t, int o, int[] counts) {
        if (t instanceof HollowSetTypeReadState) {
            HollowSetTypeReadState s = (HollowSetTypeReadState) t;
            int buckets = HashCodes.hashTableSize(s.size(o));
            HollowSetSchema schema = s.getSchema();
            HollowPrimaryKeyValueDeriver deriver = schema.getHashKey() == null ? null
                    : new HollowPrimaryKeyValueDeriver(schema.getHashKey(), engine);
            for (int b = 0; b < buckets; b++) {
                int e = s.relativeBucketValue(o, b);
                if (e < 0)
                    continue;
                boolean ok;
                if (deriver == null)
                    ok = s.contains(o, e);
                else if (hasNull(deriver.getRecordKey(e)))
                    ok = false;  // Java cannot look up a null key
                else
                    ok = s.findElement(o, deriver.getRecordKey(e)) == e;
                counts[ok ? 0 : 1]++;
            }
        } else if (t instanceof HollowMapTypeReadState) {
            HollowMapTypeReadState s = (HollowMapTypeReadState) t;
            int buckets = HashCodes.hashTableSize(s.size(o));
            HollowMapSchema schema = s.getSchema();
            HollowPrimaryKeyValueDeriver deriver = schema.getHashKey() == null ? null
                    : new HollowPrimaryKeyValueDeriver(schema.getHashKey(), engine);
            for (int b = 0; b < buckets; b++) {
                long kv = s.relativeBucket(o, b);
                if (kv == -1L)
                    continue;
                int k = (int) (kv >>> 32), v = (int) kv;
                boolean ok;
                if (deriver == null)
                    ok = s.get(o, k) == v;
                else if (hasNull(deriver.getRecordKey(k)))
                    ok = false;  // Java cannot look up a null key
                else
                    ok = s.findValue(o, deriver.getRecordKey(k)) == v && s.findKey(o, deriver.getRecordKey(k)) == k;
                counts[ok ? 0 : 1]++;
            }
        }
    }

    static boolean hasNull(Object[] key) {
        for (Object k : key)
            if (k == null)
                return true;
        return false;
    }

    /** Records of a type with references, lists, sets and maps expanded (sets and maps sorted), sorted. */
    static String deepDump(HollowReadStateEngine engine, String type) {
        HollowTypeReadState t = engine.getTypeState(type);
        List<String> lines = new ArrayList<>();
        BitSet populated = t.getPopulatedOrdinals();
        for (int o = populated.nextSetBit(0); o >= 0; o = populated.nextSetBit(o + 1))
            lines.add(deep(engine, t, o));
        Collections.sort(lines);
        StringBuilder sb = new StringBuilder();
        for (String l : lines)
            sb.append(l).append('\n');
        return sb.toString();
    }

    static String deep(HollowReadStateEngine engine, HollowTypeReadState t, int o) {
        StringBuilder sb = new StringBuilder();
        if (t instanceof HollowObjectTypeReadState) {
            HollowObjectTypeReadState s = (HollowObjectTypeReadState) t;
            HollowObjectSchema schema = s.getSchema();
            sb.append(schema.getName()).append('{');
            for (int f = 0; f < schema.numFields(); f++) {
                if (f > 0)
                    sb.append(',');
                sb.append(schema.getFieldName(f)).append('=');
                if (s.isNull(o, f)) {
                    sb.append("null");
                } else if (schema.getFieldType(f) == HollowObjectSchema.FieldType.REFERENCE) {
                    sb.append(deep(engine, engine.getTypeState(schema.getReferencedType(f)), s.readOrdinal(o, f)));
                } else {
                    sb.append(fieldOf(s, o, f));
                }
            }
            sb.append('}');
        } else if (t instanceof HollowListTypeReadState) {
            HollowListTypeReadState s = (HollowListTypeReadState) t;
            HollowTypeReadState et = engine.getTypeState(((HollowListSchema) s.getSchema()).getElementType());
            sb.append('[');
            for (int i = 0; i < s.size(o); i++) {
                if (i > 0)
                    sb.append(',');
                sb.append(deep(engine, et, s.getElementOrdinal(o, i)));
            }
            sb.append(']');
        } else if (t instanceof HollowSetTypeReadState) {
            HollowSetTypeReadState s = (HollowSetTypeReadState) t;
            HollowTypeReadState et = engine.getTypeState(s.getSchema().getElementType());
            List<String> items = new ArrayList<>();
            int buckets = HashCodes.hashTableSize(s.size(o));
            for (int b = 0; b < buckets; b++) {
                int e = s.relativeBucketValue(o, b);
                if (e >= 0)
                    items.add(deep(engine, et, e));
            }
            Collections.sort(items);
            sb.append('<').append(String.join(",", items)).append('>');
        } else {
            HollowMapTypeReadState s = (HollowMapTypeReadState) t;
            HollowMapSchema schema = s.getSchema();
            HollowTypeReadState kt = engine.getTypeState(schema.getKeyType());
            HollowTypeReadState vt = engine.getTypeState(schema.getValueType());
            List<String> items = new ArrayList<>();
            int buckets = HashCodes.hashTableSize(s.size(o));
            for (int b = 0; b < buckets; b++) {
                long kv = s.relativeBucket(o, b);
                if (kv != -1L)
                    items.add(deep(engine, kt, (int) (kv >>> 32)) + "=>" + deep(engine, vt, (int) kv));
            }
            Collections.sort(items);
            sb.append('(').append(String.join(",", items)).append(')');
        }
        return sb.toString();
    }

    static String fieldOf(HollowObjectTypeReadState s, int o, int f) {
        switch (s.getSchema().getFieldType(f)) {
            case INT: return String.valueOf(s.readInt(o, f));
            case LONG: return String.valueOf(s.readLong(o, f));
            case BOOLEAN: return String.valueOf(s.readBoolean(o, f));
            case FLOAT: return "f" + String.format("%08x", Float.floatToRawIntBits(s.readFloat(o, f)));
            case DOUBLE: return "d" + String.format("%016x", Double.doubleToRawLongBits(s.readDouble(o, f)));
            case STRING: return quote(s.readString(o, f));
            case BYTES: return "x" + hex(s.readBytes(o, f));
            default: throw new IllegalStateException();
        }
    }

    static String quote(String s) {
        StringBuilder sb = new StringBuilder("\"");
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c == '"' || c == '\\')
                sb.append('\\').append(c);
            else if (c < 0x20 || c > 0x7e)
                sb.append(String.format("\\u%04x", (int) c));
            else
                sb.append(c);
        }
        return sb.append('"').toString();
    }

    static String hex(byte[] b) {
        StringBuilder sb = new StringBuilder();
        for (byte x : b)
            sb.append(String.format("%02x", x & 0xff));
        return sb.toString();
    }

    static byte[] unhex(String s) {
        byte[] b = new byte[s.length() / 2];
        for (int i = 0; i < b.length; i++)
            b[i] = (byte) Integer.parseInt(s.substring(2 * i, 2 * i + 2), 16);
        return b;
    }

    static String unhexString(String s) {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < s.length(); i += 4)
            sb.append((char) Integer.parseInt(s.substring(i, i + 4), 16));
        return sb.toString();
    }

    // ---------------------------------------------------------------------------------------------------
    // spec: the write engine driven record by record

    static void runSpec(File specFile, File outDir) throws IOException {
        outDir.mkdirs();
        List<String> lines = Files.readAllLines(specFile.toPath(), StandardCharsets.UTF_8);
        HollowWriteStateEngine engine = new HollowWriteStateEngine();
        Map<String, Integer> pinned = new HashMap<>();
        Map<String, Set<String>> partTypes = new LinkedHashMap<>();
        List<Integer> ordinals = new ArrayList<>();
        int cycle = 0;
        for (String line : lines) {
            line = line.trim();
            if (line.isEmpty() || line.startsWith("#"))
                continue;
            String[] tok = line.split(" ");
            switch (tok[0]) {
                case "SHARDS":
                    pinned.put(tok[1], Integer.parseInt(tok[2]));
                    break;
                case "TARGET_SHARD_SIZE":
                    engine.setTargetMaxTypeShardSize(Long.parseLong(tok[1]));
                    break;
                case "FOCUS_HOLES":
                    engine.setFocusHoleFillInFewestShards(true);
                    break;
                case "PART":
                    Set<String> types = partTypes.computeIfAbsent(tok[1], k -> new LinkedHashSet<>());
                    for (int i = 2; i < tok.length; i++)
                        types.add(tok[i]);
                    break;
                case "SCHEMAS":
                    String text = new String(unhex(tok[1]), StandardCharsets.UTF_8);
                    for (HollowSchema schema : HollowSchemaParser.parseCollectionOfSchemas(text)) {
                        int n = pinned.getOrDefault(schema.getName(), -1);
                        if (schema instanceof HollowObjectSchema)
                            engine.addTypeState(new HollowObjectTypeWriteState((HollowObjectSchema) schema, n));
                        else if (schema instanceof HollowListSchema)
                            engine.addTypeState(new HollowListTypeWriteState((HollowListSchema) schema, n));
                        else if (schema instanceof HollowSetSchema)
                            engine.addTypeState(new HollowSetTypeWriteState((HollowSetSchema) schema, n));
                        else
                            engine.addTypeState(new HollowMapTypeWriteState((HollowMapSchema) schema, n));
                    }
                    break;
                case "HEADER":
                    engine.addHeaderTag(unhexString(tok[1].substring(1)), unhexString(tok[2].substring(1)));
                    break;
                case "CYCLE":
                    if (cycle > 0)
                        engine.prepareForNextCycle();
                    cycle++;
                    engine.overrideNextStateRandomizedTag(Long.parseLong(tok[1]));
                    ordinals.clear();
                    break;
                case "KEEP_ALL":
                    engine.addAllObjectsFromPreviousCycle();
                    break;
                case "REC":
                    ordinals.add(engine.add(tok[1], specRecord(engine, tok, ordinals)));
                    break;
                case "WRITE":
                    writeBlobs(engine, partTypes, outDir, cycle);
                    break;
                default:
                    throw new IllegalArgumentException("bad spec line: " + line);
            }
        }
    }

    static HollowWriteRecord specRecord(HollowWriteStateEngine engine, String[] tok, List<Integer> ordinals) {
        HollowSchema schema = engine.getSchema(tok[1]);
        if (schema instanceof HollowObjectSchema) {
            HollowObjectSchema os = (HollowObjectSchema) schema;
            HollowObjectWriteRecord rec = new HollowObjectWriteRecord(os);
            for (int f = 0; f < os.numFields(); f++) {
                String v = tok[2 + f];
                String name = os.getFieldName(f);
                if (v.equals("_"))
                    continue;
                switch (os.getFieldType(f)) {
                    case INT: rec.setInt(name, Integer.parseInt(v)); break;
                    case LONG: rec.setLong(name, Long.parseLong(v)); break;
                    case BOOLEAN: rec.setBoolean(name, v.equals("1")); break;
                    case FLOAT: rec.setFloat(name, Float.intBitsToFloat((int) Long.parseLong(v, 16))); break;
                    case DOUBLE: rec.setDouble(name, Double.longBitsToDouble(Long.parseUnsignedLong(v, 16))); break;
                    case STRING: rec.setString(name, unhexString(v.substring(1))); break;
                    case BYTES: rec.setBytes(name, unhex(v.substring(1))); break;
                    case REFERENCE: rec.setReference(name, ordinals.get(Integer.parseInt(v.substring(1)))); break;
                }
            }
            return rec;
        } else if (schema instanceof HollowListSchema) {
            HollowListWriteRecord rec = new HollowListWriteRecord();
            for (int i = 2; i < tok.length; i++)
                rec.addElement(ordinals.get(Integer.parseInt(tok[i].substring(1))));
            return rec;
        } else if (schema instanceof HollowSetSchema) {
            HollowSetWriteRecord rec = new HollowSetWriteRecord();
            for (int i = 2; i < tok.length; i++)
                rec.addElement(ordinals.get(Integer.parseInt(tok[i].substring(1))));
            return rec;
        } else {
            HollowMapWriteRecord rec = new HollowMapWriteRecord();
            for (int i = 2; i + 1 < tok.length; i += 2)
                rec.addEntry(ordinals.get(Integer.parseInt(tok[i].substring(1))),
                        ordinals.get(Integer.parseInt(tok[i + 1].substring(1))));
            return rec;
        }
    }

    static void writeBlobs(HollowWriteStateEngine engine, Map<String, Set<String>> partTypes, File dir, int cycle)
            throws IOException {
        HollowBlobWriter writer = new HollowBlobWriter(engine);
        writeOne(dir, "snapshot-" + cycle, partTypes, (os, parts) -> writer.writeSnapshot(os, parts));
        if (cycle > 1) {
            writeOne(dir, "delta-" + (cycle - 1) + "-" + cycle, partTypes, (os, parts) -> writer.writeDelta(os, parts));
            writeOne(dir, "reversedelta-" + cycle + "-" + (cycle - 1), partTypes,
                    (os, parts) -> writer.writeReverseDelta(os, parts));
        }
    }

    interface BlobWrite {
        void write(OutputStream os, ProducerOptionalBlobPartConfig.OptionalBlobPartOutputStreams parts) throws IOException;
    }

    static void writeOne(File dir, String name, Map<String, Set<String>> partTypes, BlobWrite w) throws IOException {
        ProducerOptionalBlobPartConfig.OptionalBlobPartOutputStreams parts = null;
        Map<String, ByteArrayOutputStream> partBytes = new LinkedHashMap<>();
        if (!partTypes.isEmpty()) {
            ProducerOptionalBlobPartConfig config = new ProducerOptionalBlobPartConfig();
            for (Map.Entry<String, Set<String>> e : partTypes.entrySet())
                config.addTypesToPart(e.getKey(), e.getValue().toArray(new String[0]));
            parts = config.newStreams(partName -> {
                ByteArrayOutputStream bos = new ByteArrayOutputStream();
                partBytes.put(partName, bos);
                return bos;
            });
        }
        try (OutputStream os = new FileOutputStream(new File(dir, name))) {
            w.write(os, parts);
        }
        for (Map.Entry<String, ByteArrayOutputStream> e : partBytes.entrySet()) {
            String[] pieces = name.split("-", 2);
            try (OutputStream os = new FileOutputStream(new File(dir, pieces[0] + "_" + e.getKey() + "-" + pieces[1]))) {
                e.getValue().writeTo(os);
            }
        }
    }

    // ---------------------------------------------------------------------------------------------------
    // models written with the object mapper

    public enum Genre { DRAMA, COMEDY, SCIFI }

    @HollowPrimaryKey(fields = {"code"})
    public static class Country {
        @HollowInline String code;
        String name;
    }

    public static class Director {
        @HollowInline String name;
        Country country;
    }

    @HollowPrimaryKey(fields = {"name"})
    public static class Actor {
        @HollowInline String name;
        int birthYear;
    }

    public static class Award {
        @HollowInline String name;
        int year;
    }

    @HollowPrimaryKey(fields = {"id"})
    @HollowShardLargeType(numShards = 4)
    public static class Review {
        int id;
        int movieId;
        @HollowInline String text;
        List<String> tags;
    }

    @HollowPrimaryKey(fields = {"id"})
    public static class Movie {
        int id;
        long releaseMillis;
        float rating;
        double score;
        boolean active;
        short shortValue;
        byte byteValue;
        char charValue;
        Integer boxedInt;
        Long boxedLong;
        Boolean boxedBool;
        Double boxedDouble;
        Float boxedFloat;
        @HollowInline Integer inlineInt;
        @HollowInline Long inlineLong;
        @HollowInline Float inlineFloat;
        @HollowInline Double inlineDouble;
        @HollowInline Boolean inlineBool;
        @HollowInline String title;
        String originalTitle;
        @HollowTypeName(name = "Keyword") String keyword;
        byte[] poster;
        Genre genre;
        Director director;
        List<Integer> tags;
        List<Award> awards;
        Set<Actor> cast;
        Set<Long> numbers;
        Set<Award> plainAwards;
        @HollowHashKey(fields = {"year"}) Set<Award> awardsByYear;
        Map<String, Integer> ratingsBySite;
        Map<Actor, List<Award>> awardsByActor;
        Map<Award, Long> plainMap;
        transient int notStored;
    }

    static final String[] WORDS = {"", "café", "emoji\ud83d\ude00", "nul\u0000char", "lone\ud800surrogate", "plain",
            "quote\"back\\slash", "tab\there", "日本語", "x"};

    static Movie movie(Random r, int id, int version) {
        Movie m = new Movie();
        m.id = id;
        m.releaseMillis = 1600000000000L + id * 86400000L + version;
        m.rating = r.nextInt(8) == 0 ? Float.NaN : r.nextFloat() * 10;
        m.score = r.nextInt(8) == 0 ? Double.NaN : r.nextGaussian() * 100;
        m.active = r.nextBoolean();
        m.shortValue = (short) (r.nextInt(65536) - 32768);
        m.byteValue = (byte) (r.nextInt(256) - 128);
        m.charValue = (char) r.nextInt(65536);
        m.boxedInt = r.nextInt(4) == 0 ? null : r.nextInt(2000) - 1000;
        m.boxedLong = r.nextInt(4) == 0 ? null : r.nextLong() >> r.nextInt(64);
        m.boxedBool = r.nextInt(3) == 0 ? null : r.nextBoolean();
        m.boxedDouble = r.nextInt(4) == 0 ? null : (double) r.nextInt(5);
        m.boxedFloat = r.nextInt(4) == 0 ? null : (float) r.nextInt(7) / 2;
        m.inlineInt = r.nextInt(4) == 0 ? null : r.nextInt() ;
        if (m.inlineInt != null && m.inlineInt == Integer.MIN_VALUE)
            m.inlineInt = 0;
        m.inlineLong = r.nextInt(4) == 0 ? null : r.nextLong();
        if (m.inlineLong != null && m.inlineLong == Long.MIN_VALUE)
            m.inlineLong = 0L;
        m.inlineFloat = r.nextInt(4) == 0 ? null : -r.nextFloat();
        m.inlineDouble = r.nextInt(4) == 0 ? null : r.nextDouble() * 1e300;
        m.inlineBool = r.nextInt(3) == 0 ? null : r.nextBoolean();
        m.title = r.nextInt(10) == 0 ? null : WORDS[r.nextInt(WORDS.length)] + " " + id + (version > 1 ? " v" + version : "");
        m.originalTitle = r.nextInt(5) == 0 ? null : WORDS[r.nextInt(WORDS.length)];
        m.keyword = r.nextInt(3) == 0 ? null : "kw" + r.nextInt(6);
        if (r.nextInt(4) != 0) {
            m.poster = new byte[r.nextInt(6)];
            r.nextBytes(m.poster);
        }
        m.genre = r.nextInt(5) == 0 ? null : Genre.values()[r.nextInt(3)];
        if (r.nextInt(4) != 0) {
            m.director = new Director();
            m.director.name = "director " + r.nextInt(5);
            if (r.nextBoolean()) {
                m.director.country = new Country();
                m.director.country.code = new String[] {"US", "FR", "JP"}[r.nextInt(3)];
                m.director.country.name = r.nextBoolean() ? null : m.director.country.code.toLowerCase();
            }
        }
        m.tags = new ArrayList<>();
        for (int i = r.nextInt(5); i > 0; i--)
            m.tags.add(r.nextInt(40) - 10);
        m.awards = r.nextInt(4) == 0 ? null : new ArrayList<>();
        if (m.awards != null)
            for (int i = r.nextInt(3); i > 0; i--)
                m.awards.add(award(r));
        m.cast = new HashSet<>();
        for (int i = r.nextInt(6); i > 0; i--)
            m.cast.add(actor(r));
        m.numbers = new HashSet<>();
        for (int i = r.nextInt(7); i > 0; i--)
            m.numbers.add((long) r.nextInt(1000) * (r.nextBoolean() ? 1 : 1000000007L));
        m.plainAwards = new HashSet<>();
        for (int i = r.nextInt(4); i > 0; i--)
            m.plainAwards.add(award(r));
        m.awardsByYear = new HashSet<>();
        for (int i = r.nextInt(4); i > 0; i--)
            m.awardsByYear.add(award(r));
        m.ratingsBySite = new HashMap<>();
        for (int i = r.nextInt(4); i > 0; i--)
            m.ratingsBySite.put(new String[] {"imdb", "rt", "mc", "lb"}[r.nextInt(4)], r.nextInt(100));
        m.awardsByActor = new HashMap<>();
        for (int i = r.nextInt(3); i > 0; i--) {
            List<Award> list = new ArrayList<>();
            for (int j = r.nextInt(3); j > 0; j--)
                list.add(award(r));
            m.awardsByActor.put(actor(r), list);
        }
        m.plainMap = r.nextInt(3) == 0 ? null : new HashMap<>();
        if (m.plainMap != null)
            for (int i = r.nextInt(3); i > 0; i--)
                m.plainMap.put(award(r), r.nextLong());
        return m;
    }

    static Actor actor(Random r) {
        Actor a = new Actor();
        int n = r.nextInt(12);
        a.name = "actor " + n + (n % 5 == 0 ? " \ud83c\udfac" : "");
        a.birthYear = 1950 + n;
        return a;
    }

    static Award award(Random r) {
        Award a = new Award();
        a.name = new String[] {"oscar", "palme", "bafta", "césar"}[r.nextInt(4)];
        a.year = 1990 + r.nextInt(30);
        return a;
    }

    static Review review(Random r, int id, int version) {
        Review v = new Review();
        v.id = id;
        v.movieId = r.nextInt(50);
        v.text = "review " + id + " v" + version + " " + WORDS[r.nextInt(WORDS.length)];
        v.tags = new ArrayList<>();
        for (int i = r.nextInt(3); i > 0; i--)
            v.tags.add("t" + r.nextInt(9));
        return v;
    }

    static void runModel(String name, File dir) throws IOException {
        dir.mkdirs();
        if (name.equals("rich"))
            richModel(dir);
        else if (name.equals("evolve"))
            evolveModel(dir);
        else if (name.equals("reshard"))
            reshardModel(dir);
        else if (name.equals("edges"))
            edgesModel(dir);
        else
            throw new IllegalArgumentException("unknown model " + name);
    }

    /** Four states of Movie and Review: changes, removals and additions each cycle, several shards. */
    static void richModel(File dir) throws IOException {
        HollowWriteStateEngine engine = new HollowWriteStateEngine();
        engine.setTargetMaxTypeShardSize(2048);
        engine.addHeaderTag("model", "rich");
        HollowObjectMapper mapper = new HollowObjectMapper(engine);
        mapper.initializeTypeState(Movie.class);
        mapper.initializeTypeState(Review.class);
        Map<Integer, Integer> movieVersion = new TreeMap<>();
        Map<Integer, Integer> reviewVersion = new TreeMap<>();
        for (int i = 0; i < 60; i++)
            movieVersion.put(i, 1);
        for (int i = 0; i < 150; i++)
            reviewVersion.put(i, 1);
        Map<String, Set<String>> noParts = Collections.emptyMap();
        for (int cycle = 1; cycle <= 4; cycle++) {
            if (cycle > 1) {
                engine.prepareForNextCycle();
                Random change = new Random(1000 + cycle);
                for (int i = 0; i < 8; i++)
                    movieVersion.remove(change.nextInt(60 + cycle * 10));
                for (int i = 0; i < 10; i++)
                    movieVersion.put(change.nextInt(60 + cycle * 10), cycle);
                for (int i = 0; i < 20; i++)
                    reviewVersion.remove(change.nextInt(150 + cycle * 20));
                for (int i = 0; i < 25; i++)
                    reviewVersion.put(change.nextInt(150 + cycle * 20), cycle);
            }
            engine.addHeaderTag("cycle", String.valueOf(cycle));
            for (Map.Entry<Integer, Integer> e : movieVersion.entrySet())
                mapper.add(movie(new Random(e.getKey() * 31L + e.getValue()), e.getKey(), e.getValue()));
            for (Map.Entry<Integer, Integer> e : reviewVersion.entrySet())
                mapper.add(review(new Random(e.getKey() * 17L + e.getValue()), e.getKey(), e.getValue()));
            writeBlobs(engine, noParts, dir, cycle);
            writeSchemas(engine, new File(dir, "schemas-" + cycle + ".txt"));
        }
    }

    @HollowTypeName(name = "Film")
    @HollowPrimaryKey(fields = {"id"})
    public static class FilmV1 {
        int id;
        @HollowInline String title;
        int year;
        List<String> languages;
    }

    @HollowPrimaryKey(fields = {"name"})
    public static class Studio {
        @HollowInline String name;
        int founded;
    }

    @HollowTypeName(name = "Film")
    @HollowPrimaryKey(fields = {"id"})
    public static class FilmV2 {
        int id;
        @HollowInline String title;
        List<String> languages;
        double rating;
        Studio studio;
    }

    /** A delta chain across a data model change: field removed, fields added, a new type. */
    static void evolveModel(File dir) throws IOException {
        Map<String, Set<String>> noParts = Collections.emptyMap();
        HollowWriteStateEngine v1 = new HollowWriteStateEngine();
        HollowObjectMapper m1 = new HollowObjectMapper(v1);
        m1.initializeTypeState(FilmV1.class);
        for (int cycle = 1; cycle <= 2; cycle++) {
            if (cycle > 1)
                v1.prepareForNextCycle();
            for (int i = 0; i < 20; i++) {
                if (cycle == 2 && i % 7 == 3)
                    continue;
                FilmV1 f = new FilmV1();
                f.id = i;
                f.title = "film " + i + (cycle == 2 && i % 5 == 0 ? " (restored)" : "");
                f.year = 1980 + i;
                f.languages = new ArrayList<>();
                f.languages.add(i % 2 == 0 ? "en" : "fr");
                m1.add(f);
            }
            writeBlobs(v1, noParts, dir, cycle);
            writeSchemas(v1, new File(dir, "schemas-" + cycle + ".txt"));
        }
        HollowReadStateEngine restored = new HollowReadStateEngine(true);
        try (InputStream in = new FileInputStream(new File(dir, "snapshot-2"))) {
            new HollowBlobReader(restored).readSnapshot(HollowBlobInput.serial(in));
        }
        HollowWriteStateEngine v2 = new HollowWriteStateEngine();
        HollowObjectMapper m2 = new HollowObjectMapper(v2);
        m2.initializeTypeState(FilmV2.class);
        v2.restoreFrom(restored);
        for (int cycle = 3; cycle <= 4; cycle++) {
            if (cycle > 3)
                v2.prepareForNextCycle();
            for (int i = 0; i < 24; i++) {
                if (i % 7 == 3 && cycle == 3)
                    continue;
                FilmV2 f = new FilmV2();
                f.id = i;
                f.title = "film " + i + (i % 5 == 0 ? " (restored)" : "");
                f.languages = new ArrayList<>();
                f.languages.add(i % 2 == 0 ? "en" : "fr");
                f.rating = i % 4 == 0 ? Double.NaN : i / 4.0;
                if (i % 3 != 0 || cycle == 4) {
                    f.studio = new Studio();
                    f.studio.name = "studio " + (i % 4);
                    f.studio.founded = 1900 + i % 4;
                }
                m2.add(f);
            }
            writeBlobs(v2, noParts, dir, cycle);
            writeSchemas(v2, new File(dir, "schemas-" + cycle + ".txt"));
        }
    }

    @HollowPrimaryKey(fields = {"id"})
    public static class Row {
        int id;
        @HollowInline String label;
        List<Integer> values;
        Set<String> words;
        Map<Integer, String> byNumber;
    }

    /** Type re-sharding inside a delta chain (Java 7.10+, opt-in): the data grows, then shrinks. */
    static void reshardModel(File dir) throws IOException {
        Map<String, Set<String>> noParts = Collections.emptyMap();
        HollowWriteStateEngine engine = new HollowWriteStateEngine();
        engine.allowTypeResharding(true);
        engine.setTargetMaxTypeShardSize(1024);
        HollowObjectMapper mapper = new HollowObjectMapper(engine);
        mapper.initializeTypeState(Row.class);
        int[] sizes = {40, 160, 400, 900, 300, 60};
        for (int cycle = 1; cycle <= sizes.length; cycle++) {
            if (cycle > 1)
                engine.prepareForNextCycle();
            for (int i = 0; i < sizes[cycle - 1]; i++) {
                Row r = new Row();
                r.id = i;
                r.label = "row " + i + (i % 9 == cycle % 9 ? " v" + cycle : "");
                r.values = new ArrayList<>();
                for (int j = 0; j < i % 4; j++)
                    r.values.add((i * 7 + j) % 300);
                r.words = new HashSet<>();
                for (int j = 0; j < i % 3; j++)
                    r.words.add("w" + ((i + j) % 50));
                r.byNumber = new HashMap<>();
                for (int j = 0; j < i % 3; j++)
                    r.byNumber.put((i + j) % 70, "n" + j);
                mapper.add(r);
            }
            writeBlobs(engine, noParts, dir, cycle);
        }
    }

    /** Numbers at the edges of Java's null conventions: primitives, boxed references and inline boxes. */
    @HollowPrimaryKey(fields = {"id"})
    public static class Edges {
        int id;
        float f;
        double d;
        short s;
        char c;
        Float boxedF;
        Double boxedD;
        @HollowInline Float inlineF;
        @HollowInline Double inlineD;
        @HollowInline Short inlineS;
        @HollowInline Byte inlineB;
        @HollowInline Character inlineC;
        @HollowInline Integer inlineI;
    }

    /** One snapshot; row k takes, in every field, the k-th value of that field's column (null for a box). */
    static void edgesModel(File dir) throws IOException {
        // a NaN whose bits are those of Hollow's double null: the write record canonicalizes it, so it stays a NaN
        double nullBitsNaN = Double.longBitsToDouble(0x7ff8000000000001L);
        float[] f = {Float.NaN, 0f, -0f, 1.5f, Float.NEGATIVE_INFINITY, Float.MIN_VALUE};
        double[] d = {Double.NaN, nullBitsNaN, -0.0, 2.5, Double.POSITIVE_INFINITY, Double.MIN_VALUE};
        short[] s = {Short.MIN_VALUE, 0, -1, Short.MAX_VALUE, 7, 8};
        char[] c = {Character.MIN_VALUE, 'a', '\uffff', 'b', 'c', 'd'};
        Byte[] b = {Byte.MIN_VALUE, null, (byte) 0, Byte.MAX_VALUE, (byte) -1, (byte) 1};
        Integer[] i = {Integer.MIN_VALUE, null, 0, Integer.MAX_VALUE, -1, 1};
        HollowWriteStateEngine engine = new HollowWriteStateEngine();
        HollowObjectMapper mapper = new HollowObjectMapper(engine);
        mapper.initializeTypeState(Edges.class);
        for (int k = 0; k < f.length; k++) {
            Edges e = new Edges();
            e.id = k;
            e.f = f[k];
            e.d = d[k];
            e.s = s[k];
            e.c = c[k];
            boolean none = k == 2;
            e.boxedF = none ? null : f[k];
            e.boxedD = none ? null : d[k];
            e.inlineF = none ? null : f[k];
            e.inlineD = none ? null : d[k];
            e.inlineS = none ? null : s[k];
            e.inlineC = none ? null : c[k];
            e.inlineB = b[k];
            e.inlineI = i[k];
            mapper.add(e);
        }
        writeBlobs(engine, Collections.emptyMap(), dir, 1);
    }

    static void writeSchemas(HollowWriteStateEngine engine, File f) throws IOException {
        StringBuilder sb = new StringBuilder();
        for (HollowSchema s : engine.getSchemas())
            sb.append(s.toString()).append('\n');
        Files.write(f.toPath(), sb.toString().getBytes(StandardCharsets.UTF_8));
    }
}
