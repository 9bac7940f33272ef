// kafkajs against a Kafka-compatible broker: produce N keyed messages with a codec, then consume them back.
// Usage: node probe.js <bootstrap> <topic> <count> <codec:none|gzip>
// Prints "<partition> <offset> <key> <value>" per consumed message, sorted by partition then offset.
const { Kafka, CompressionTypes, logLevel } = require("kafkajs");

async function main() {
  const [bootstrap, topic, countArg, codec] = process.argv.slice(2);
  const count = parseInt(countArg, 10);
  const kafka = new Kafka({ clientId: "probe", brokers: bootstrap.split(","), logLevel: logLevel.NOTHING });
  const producer = kafka.producer({ allowAutoTopicCreation: false, idempotent: false });
  await producer.connect();
  const messages = [];
  for (let i = 0; i < count; i++) messages.push({ key: `k${i}`, value: `v${i}`, partition: i % 2 });
  await producer.send({
    topic,
    acks: -1,
    compression: codec === "gzip" ? CompressionTypes.GZIP : CompressionTypes.None,
    messages,
  });
  await producer.disconnect();

  const admin = kafka.admin();
  await admin.connect();
  const offsets = await admin.fetchTopicOffsets(topic);
  await admin.disconnect();
  const total = offsets.reduce((n, o) => n + Number(o.high) - Number(o.low), 0);

  // kafkajs has no group-less consumer, so reading back uses a consumer group.
  const rows = [];
  const consumer = kafka.consumer({ groupId: `probe-${Date.now()}`, maxWaitTimeInMs: 200 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out with ${rows.length} of ${total}`)), 60000);
    consumer.run({
      eachMessage: async ({ partition, message }) => {
        rows.push([partition, Number(message.offset), message.key.toString(), message.value.toString()]);
        if (rows.length >= total) { clearTimeout(timer); resolve(); }
      },
    }).catch(reject);
  });
  await consumer.disconnect();
  rows.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  for (const r of rows) console.log(r.join(" "));
}

main().catch((e) => { console.error(e); process.exit(1); });
