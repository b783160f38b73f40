// Sets up the sharded cluster in docker/sharded/compose.yaml. Run by the `init` service:
//   mongosh --nodb --quiet --file /init.js
// Every step is idempotent, so the script can run again against an existing cluster.

// Fail fast when a server is unreachable, so the retry loops below stay in control.
const OPTIONS = "serverSelectionTimeoutMS=2000&connectTimeoutMS=2000";

// mongosh throws on { ok: 0 } replies; the check below also covers a reply that is returned.
function command(db, cmd) {
  const reply = db.runCommand(cmd);
  if (!reply.ok) {
    const err = new Error(`${Object.keys(cmd)[0]} failed: ${reply.errmsg}`);
    err.code = reply.code;
    err.codeName = reply.codeName;
    throw err;
  }
  return reply;
}

function retry(what, attempts, fn) {
  for (let i = 1; ; i++) {
    try {
      return fn();
    } catch (e) {
      if (i >= attempts) throw e;
      print(`waiting for ${what}: ${e.message}`);
      sleep(1000);
    }
  }
}

function initiateReplicaSet(hostPort, config) {
  // directConnection: the member is not yet part of a replica set that could be discovered.
  const admin = retry(hostPort, 60, () =>
    connect(`mongodb://${hostPort}/admin?directConnection=true&${OPTIONS}`),
  );
  try {
    command(admin, { replSetGetStatus: 1 });
    print(`${config._id}: already initiated`);
  } catch (e) {
    if (e.codeName !== "NotYetInitialized") throw e;
    command(admin, { replSetInitiate: config });
    print(`${config._id}: initiated`);
  }
  retry(`${config._id} to elect a primary`, 60, () => {
    if (!command(admin, { hello: 1 }).isWritablePrimary) throw new Error("no primary yet");
  });
}

// Members are named by compose service name: only containers (mongos, the other members,
// this script) connect to them. Host clients go through mongos.
initiateReplicaSet("configsvr:27019", {
  _id: "configrs",
  configsvr: true,
  members: [{ _id: 0, host: "configsvr:27019" }],
});
initiateReplicaSet("shard1:27018", {
  _id: "shard1rs",
  members: [{ _id: 0, host: "shard1:27018" }],
});
initiateReplicaSet("shard2:27018", {
  _id: "shard2rs",
  members: [{ _id: 0, host: "shard2:27018" }],
});

// mongos retries the config servers until they have a primary, then starts answering.
const admin = retry("mongos", 120, () => {
  const mongos = connect(`mongodb://mongos:27017/admin?${OPTIONS}`);
  command(mongos, { ping: 1 });
  return mongos;
});

// addShard succeeds without change when the same shard is already registered.
command(admin, { addShard: "shard1rs/shard1:27018", name: "shard1" });
command(admin, { addShard: "shard2rs/shard2:27018", name: "shard2" });

// enableSharding is implicit since MongoDB 6.0; it is kept to make the intent explicit.
command(admin, { enableSharding: "threadmem" });

// Every update the library sends targets one thread by _id, so with _id as the shard key
// each update is routed to a single shard. Hashing spreads new threads evenly and lets
// MongoDB create chunks on every shard up front. Running shardCollection again with the
// same key is a no-op; a different key fails, which is wanted.
command(admin, { shardCollection: "threadmem.threads", key: { _id: "hashed" } });

// The indexes ThreadStore.ensure_indexes() creates, under the same names: creating an
// index whose key exists already under another name fails with IndexOptionsConflict.
// Listing a user's threads is a scatter-gather query, served on each shard by the
// (owner_id, created) index.
command(admin.getSiblingDB("threadmem"), {
  createIndexes: "threads",
  indexes: [
    { key: { owner_id: 1, created: 1 }, name: "owner_created" },
    { key: { created: 1 }, name: "created" },
    { key: { "messages.blobs": 1 }, name: "message_blobs" },
    // Not unique: a unique index on a sharded collection must start with the shard key.
    // The library then checks the id of a message it did not make with a read.
    { key: { "messages.id": 1 }, name: "message_id" },
    // The TTL index: each shard's TTL monitor deletes its threads once expires_at passes.
    { key: { expires_at: 1 }, expireAfterSeconds: 0, name: "expires_at" },
  ],
});

// Overflow pages of long threads, sharded on their thread's id so that a thread's pages
// stay together on one shard, with the indexes PageStore.ensure_indexes() creates.
command(admin, { shardCollection: "threadmem.threads.pages", key: { thread_id: "hashed" } });
command(admin.getSiblingDB("threadmem"), {
  createIndexes: "threads.pages",
  indexes: [
    { key: { thread_id: 1, n: 1 }, unique: true, name: "thread_page" },
    { key: { "messages.id": 1 }, name: "message_id" },
    { key: { "messages.blobs": 1 }, name: "message_blobs" },
    // Pages expire with their thread (never before it).
    { key: { expires_at: 1 }, expireAfterSeconds: 0, name: "expires_at" },
  ],
});

print("sharded cluster ready: threadmem.threads is sharded on { _id: \"hashed\" }, threadmem.threads.pages on { thread_id: \"hashed\" }");
