// Package capture reads changes of PostgreSQL tables through a logical
// replication slot (pgoutput), after a consistent initial snapshot, and
// publishes them to Kafka through a stream.Writer: one topic per table
// (cdc.<schema>.<table>), watermark markers after commits and while idle, and
// LSNs confirmed to PostgreSQL only after Kafka acknowledged everything at or
// below them.
//
// Lifecycle of a slot. Run creates the publication and the slot if missing.
// A new slot exports its snapshot: SnapshotWorkers connections import it and
// read every published table in chunks of SnapshotChunkRows in primary-key
// order (OpSnapshot events at the consistent point), then streaming starts
// at the consistent point: no gap, no overlap. Each chunk's end key is
// recorded (progress.go) once Kafka acknowledged it. The
// state table (Config.StateTable, in the source database) records each slot
// capture created and whether its snapshot finished; it is written before
// the slot, so:
//   - slot and finished record: resume from confirmed_flush_lsn, no snapshot;
//   - record but no slot (dropped, or the database was restored/failed over):
//     ErrSlotLost, terminal; wal_status lost: ErrSlotInvalidated, terminal.
//     Nothing is re-snapshotted silently: Reset is the recovery;
//   - slot, unfinished record and recorded chunks (crash during the
//     snapshot): read the rest of each table from its last recorded chunk,
//     at the consistent point, skipping rows Kafka already has, then stream
//     (resumeSnapshot);
//   - unfinished record otherwise (crash before any row, or Reset): a new slot
//     and snapshot, each table's rows preceded by a truncate event so rows deleted
//     meanwhile do not linger downstream;
//   - slot without record: made by someone else; adopted without snapshot.
//
// Delivery. Changes are at-least-once with stable positions (commit LSN,
// index in the transaction). On restart, capture reads the end of its topics
// (Config.Brokers) and skips what Kafka already holds, so a re-sent change
// never follows a newer version of its key, nor a marker at or above it.
//
// High availability. Processes sharing a slot elect a leader with a session
// advisory lock; standbys take over within about a second of its death.
//
// Backfill. RequestBackfill (`starstream backfill`) writes a request row to
// the signal table (Config.SignalTable, in the publication); the reader sees
// it in the WAL and a backfiller re-reads the table between low/high
// watermark rows, DBLog-style: see backfill.go.
//
// Decoding. Values take the Go types stream.Kind documents; snapshot and
// streaming share the decoders of capture/internal/pgdecode. Unchanged TOAST
// values are listed in Event.Unchanged (and filled from the old row under
// REPLICA IDENTITY FULL), never turned into NULL.
//
// Throughput and memory. A slot's walsender is the limit (bench_test.go,
// `make bench-capture`, measures capture against pg_recvlogical on the same
// rows); capture must keep up with it on the same cores. Row changes are
// parsed in place (capture/internal/pgoutput), the pipeline passes the
// reader's chunks through, and a lane enqueues them to a stream.Writer
// without waiting (Enqueue), so that Avro encoding overlaps Kafka's
// acknowledgements, awaited in order on another goroutine. Decoded events
// count against MaxInFlight until Kafka acknowledged them, which bounds
// memory whatever the transaction size. What CPU remains is mostly the
// events' maps and their garbage collection. With the default GOGC=100 a
// bench-capture run peaks at 80–110 MB RSS; GOGC=400 with GOMEMLIMIT=100MiB
// measured about 13% less capture CPU for 20 MB more, GOGC=400 alone went
// past 150 MB. Those are the process's settings (environment), not this
// package's.
package capture
