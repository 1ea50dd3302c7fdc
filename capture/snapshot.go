package capture

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sync/errgroup"

	"github.com/starstream/starstream/stream"
)

// pglogreplSlot is a slot just created, with the snapshot it exported.
type pglogreplSlot struct {
	consistentPoint stream.LSN
	snapshotName    string
	// truncateFirst: a snapshot of this slot name was published before (it was
	// interrupted, or the slot was reset). Its rows may include rows deleted
	// since, which the new snapshot cannot delete; a truncate event ahead of
	// each table's new snapshot clears them downstream.
	truncateFirst bool
}

// createSlot creates the slot with an exported snapshot. A slot left by an
// interrupted initial snapshot is dropped first: it never confirmed anything,
// so nothing is lost by starting that snapshot over.
func (c *Capture) createSlot(ctx context.Context, db *pgx.Conn, rconn *pgconn.PgConn, st slotState) (pglogreplSlot, error) {
	if st.exists {
		c.log.Warn("initial snapshot of this slot was interrupted: dropping the slot and starting the snapshot over")
		if _, err := db.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, c.cfg.Slot); err != nil {
			return pglogreplSlot{}, fmt.Errorf("drop slot %s of an interrupted snapshot: %w", c.cfg.Slot, err)
		}
	}
	// Progress of an earlier snapshot of this slot name is void.
	if err := c.deleteProgress(ctx, db, ""); err != nil {
		return pglogreplSlot{}, err
	}
	// Recorded before the slot exists: a slot without a record was not ours.
	if err := c.recordState(ctx, db, 0, false); err != nil {
		return pglogreplSlot{}, err
	}
	res, err := pglogrepl.CreateReplicationSlot(ctx, rconn, c.cfg.Slot, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{SnapshotAction: "EXPORT_SNAPSHOT", Mode: pglogrepl.LogicalReplication})
	if err != nil {
		return pglogreplSlot{}, fmt.Errorf("create slot %s: %w", c.cfg.Slot, err)
	}
	cp, err := stream.ParseLSN(res.ConsistentPoint)
	if err != nil {
		return pglogreplSlot{}, fmt.Errorf("create slot %s: consistent point: %w", c.cfg.Slot, err)
	}
	c.log.Info("created replication slot", "lsn", cp.String(), "snapshot", res.SnapshotName)
	return pglogreplSlot{consistentPoint: cp, snapshotName: res.SnapshotName, truncateFirst: st.recorded}, nil
}

func (c *Capture) recordState(ctx context.Context, db *pgx.Conn, lsn stream.LSN, done bool) error {
	var lsnArg any
	if lsn != 0 {
		lsnArg = lsn.String()
	}
	_, err := db.Exec(ctx, `INSERT INTO `+c.stateIdent()+` (slot_name, publication, consistent_lsn, snapshot_done, snapshot_done_at)
		VALUES ($1, $2, $3::pg_lsn, $4, CASE WHEN $4 THEN now() END)
		ON CONFLICT (slot_name) DO UPDATE SET publication = EXCLUDED.publication,
			consistent_lsn = coalesce(EXCLUDED.consistent_lsn, `+c.stateIdent()+`.consistent_lsn),
			snapshot_done = EXCLUDED.snapshot_done, snapshot_done_at = EXCLUDED.snapshot_done_at`,
		c.cfg.Slot, c.cfg.Publication, lsnArg, done)
	if err != nil {
		return fmt.Errorf("record capture state of %s: %w", c.cfg.Slot, err)
	}
	return nil
}

// snapshot reads every published table inside the slot's exported snapshot:
// exactly the rows committed before the consistent point, each an OpSnapshot
// event at (consistent point, seq), where seq = the table's seqBase + 1 + the
// row's index in primary-key order. SnapshotWorkers connections import the
// same snapshot and read different tables at once, each in chunks of
// SnapshotChunkRows (keyset pagination). Once Kafka acknowledged a chunk, rec
// records its end key: a crash resumes after it (see backfill.go).
// Progress (rows, rows/s, ETA from pg_class.reltuples) goes to the log every
// 10 seconds and to the metrics, per table.
func (c *Capture) snapshot(ctx context.Context, slot pglogreplSlot, p *pipeline, rec *recorder) error {
	workers := make([]pgx.Tx, 0, c.cfg.SnapshotWorkers)
	for i := 0; i < c.cfg.SnapshotWorkers; i++ {
		conn, err := c.connect(ctx)
		if err != nil {
			return err
		}
		defer conn.Close(context.WithoutCancel(ctx))
		tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
		if err != nil {
			return err
		}
		defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only
		if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT '"+strings.ReplaceAll(slot.snapshotName, "'", "''")+"'"); err != nil {
			return fmt.Errorf("import snapshot %s: %w", slot.snapshotName, err)
		}
		workers = append(workers, tx)
	}
	var at time.Time
	if err := workers[0].QueryRow(ctx, "SELECT now()").Scan(&at); err != nil {
		return err
	}
	at = at.UTC()
	all, err := publicationTables(ctx, workers[0], c.cfg.Publication)
	if err != nil {
		return err
	}
	var locked [][2]string
	for _, t := range all {
		if !c.isInternal(t[0], t[1]) {
			locked = append(locked, t)
		}
	}
	// Every worker locks every table right after importing the snapshot, as
	// pg_dump does (lockTables): no rewrite commits while the snapshot is
	// read, and a worker's read never queues behind a rewrite waiting for
	// another worker's lock. A rewrite that committed between the export
	// and the locks left files the snapshot reads as empty: start over.
	for _, tx := range workers {
		if err := lockTables(ctx, tx, c.cfg.LockTimeout, locked...); err != nil {
			return err
		}
	}
	if names, err := rewritten(ctx, workers[0], locked...); err != nil {
		return err
	} else if len(names) > 0 {
		return fmt.Errorf("%s rewritten (TRUNCATE or ALTER TABLE) after the snapshot was exported: the snapshot starts over",
			strings.Join(names, ", "))
	}
	var tables []snapTable
	for _, t := range locked {
		cr, err := newChunkReader(ctx, workers[0], &typeCatalog{db: workers[0]}, t[0], t[1], c.cfg.TopicPrefix)
		if err != nil {
			return fmt.Errorf("snapshot %s.%s: %w", t[0], t[1], err)
		}
		name := t[0] + "." + t[1]
		tables = append(tables, snapTable{cr: cr,
			row: progressRow{job: snapshotJob, table: name, snapshotLSN: slot.consistentPoint, seqBase: seqBase(len(tables))},
			tp:  &tableProgress{table: name, job: snapshotJob, estimate: estimateRows(ctx, workers[0], t[0], t[1])}})
	}
	if slot.truncateFirst {
		// Before any row, and acknowledged before the progress rows exist: a
		// resumed snapshot never sends a truncate after rows.
		for _, t := range tables {
			if err := p.send(ctx, unit{register: t.cr.rel}); err != nil {
				return err
			}
			ev := stream.Event{Schema: t.cr.schema, Table: t.cr.table, Op: stream.OpTruncate,
				Pos: stream.Position{LSN: slot.consistentPoint, Seq: t.row.seqBase}, CommitTime: at}
			if err := p.send(ctx, unit{events: []stream.Event{ev}}); err != nil {
				return err
			}
		}
		if err := c.await(ctx, p); err != nil {
			return err
		}
	}
	// From here on rows may reach Kafka: the progress rows say where they
	// are, and their presence makes a restart resume instead of start over.
	for _, t := range tables {
		if err := c.saveProgress(ctx, rec.db, t.row); err != nil {
			return err
		}
	}
	var tps []*tableProgress
	todo := make(chan snapTable, len(tables))
	for _, t := range tables {
		todo <- t
		tps = append(tps, t.tp)
	}
	close(todo)
	started := time.Now()
	stopReport := make(chan struct{})
	defer close(stopReport)
	go c.reportProgress(func() []*tableProgress { return tps }, 10*time.Second, stopReport)
	var total atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for _, tx := range workers {
		g.Go(func() error {
			for t := range todo {
				t.tp.begin()
				c.metrics.track(t.tp)
				if err := c.snapshotTable(gctx, tx, t, slot.consistentPoint, at, p, rec); err != nil {
					return fmt.Errorf("snapshot %s: %w", t.row.table, err)
				}
				t.tp.finish()
				n, rate, _, _ := t.tp.figures(time.Now())
				total.Add(n)
				c.log.Info("snapshot of table read", "table", t.row.table, "rows", n, "rows_per_s", int(rate))
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	c.log.Info("snapshot read", "rows", total.Load(), "tables", len(tables), "seconds", int(time.Since(started).Seconds()))
	for _, tx := range workers {
		if err := tx.Commit(ctx); err != nil {
			return err
		}
	}
	return nil
}

// snapTable is one table of the initial snapshot.
type snapTable struct {
	cr  *chunkReader
	row progressRow
	tp  *tableProgress
	// skip: encoded keys an interrupted run already published past its last
	// recorded chunk (resumeSnapshot); codec encodes keys to look them up.
	skip  map[string]struct{}
	codec *stream.TableCodec
}

// resumeSnapshot finishes an initial snapshot interrupted by a crash, before
// streaming starts, from each table's last recorded chunk. The exported
// snapshot died with the crashed process, so the remaining chunks are read
// now, each by a statement of its own, and published at the consistent point
// like the rest of the snapshot; rows the crashed run had published past its
// last recorded chunk are found in Kafka and not published again.
//
// Why not DBLog-style while streaming, as backfills are: rows published at a
// later high watermark would appear downstream only from that position, and
// changes streamed meanwhile (an order of a customer whose row is not read
// yet) would find nothing at their own position: facts lose their
// dimension members. At the consistent point every row exists from the
// start; a row changed since the crash shows its newer values from the
// consistent point on, and the stream, which starts at the consistent point
// after the snapshot, replays each of its changes in order after it, so
// every key ends exact and no key ever gets an older position after a newer
// one. Rows deleted since the crash are missing from the snapshot: their
// delete events come from the stream.
func (c *Capture) resumeSnapshot(ctx context.Context, db *pgx.Conn, p *pipeline, rec *recorder) error {
	rows, err := c.loadProgress(ctx, db, snapshotJob)
	if err != nil {
		return err
	}
	at := time.Now().UTC()
	var todo []snapTable
	for _, r := range rows {
		if r.done {
			continue
		}
		t := snapTable{row: r, tp: &tableProgress{table: r.table, job: snapshotJob, prior: r.rowsDone}}
		schema, table, _ := strings.Cut(r.table, ".")
		t.tp.estimate = estimateRows(ctx, db, schema, table)
		found := 0
		if len(c.cfg.Brokers) > 0 {
			t.skip = map[string]struct{}{}
			if found, err = scanSnapshotKeys(ctx, c.cfg.Brokers, c.cfg.KafkaSecurity, stream.Topic(c.cfg.TopicPrefix, schema, table), r.snapshotLSN,
				r.seqBase+uint64(r.rowsDone), c.cfg.inFlightMargin(), t.skip); err != nil {
				return fmt.Errorf("read what the interrupted snapshot of %s published: %w", r.table, err)
			}
		} else {
			c.log.Warn("no brokers configured: rows of the interrupted snapshot's last chunks may be published twice", "table", r.table)
		}
		c.log.Info("resuming the initial snapshot after a crash", "table", r.table, "rows_done", r.rowsDone,
			"published_past_last_chunk", found)
		todo = append(todo, t)
	}
	queue := make(chan snapTable, len(todo))
	var tps []*tableProgress
	for _, t := range todo {
		queue <- t
		tps = append(tps, t.tp)
	}
	close(queue)
	stopReport := make(chan struct{})
	defer close(stopReport)
	go c.reportProgress(func() []*tableProgress { return tps }, 10*time.Second, stopReport)
	g, gctx := errgroup.WithContext(ctx)
	for i := 0; i < min(c.cfg.SnapshotWorkers, len(todo)); i++ {
		g.Go(func() error {
			conn, err := c.connect(gctx)
			if err != nil {
				return err
			}
			defer conn.Close(context.WithoutCancel(gctx))
			for t := range queue {
				schema, table, _ := strings.Cut(t.row.table, ".")
				if t.cr, err = newChunkReader(gctx, conn, &typeCatalog{db: conn}, schema, table, c.cfg.TopicPrefix); err != nil {
					return fmt.Errorf("snapshot %s: %w", t.row.table, err)
				}
				if len(t.skip) > 0 {
					if t.codec, err = stream.NewTableCodec(stream.NewCodecs(), t.cr.rel.Schema); err != nil {
						return err
					}
				}
				t.tp.begin()
				c.metrics.track(t.tp)
				if err := c.snapshotTable(gctx, conn, t, t.row.snapshotLSN, at, p, rec); err != nil {
					return fmt.Errorf("snapshot %s: %w", t.row.table, err)
				}
				t.tp.finish()
				n, rate, _, _ := t.tp.figures(time.Now())
				c.log.Info("snapshot of table read", "table", t.row.table, "rows", n, "rows_per_s", int(rate), "resumed", true)
			}
			return nil
		})
	}
	return g.Wait()
}

// await waits until Kafka acknowledged everything sent to p so far.
func (c *Capture) await(ctx context.Context, p *pipeline) error {
	acked := make(chan struct{})
	if err := p.send(ctx, unit{done: func() { close(acked) }}); err != nil {
		return err
	}
	select {
	case <-acked:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// snapshotTable reads one table chunk by chunk, from its recorded end key;
// after each chunk it queues the recording of the chunk's end key, taken once
// Kafka acknowledged it.
func (c *Capture) snapshotTable(ctx context.Context, tx querier, t snapTable, lsn stream.LSN, at time.Time,
	p *pipeline, rec *recorder) error {
	cr, rel := t.cr, t.cr.rel
	if err := p.send(ctx, unit{register: rel}); err != nil {
		return err
	}
	row := t.row
	for {
		chunk := make([]stream.Event, 0, min(c.cfg.ChunkEvents, c.cfg.SnapshotChunkRows))
		base := row.seqBase + 1 + uint64(row.rowsDone)
		var i uint64
		var kb []byte
		last, n, done, err := cr.read(ctx, tx, row.lastKey, c.cfg.SnapshotChunkRows, func(raw [][]byte) error {
			after, err := cr.decode(raw)
			if err != nil {
				return err
			}
			if t.codec != nil {
				if kb, err = t.codec.AppendKey(kb[:0], rel.key(after)); err != nil {
					return err
				}
				if _, ok := t.skip[string(keyBody(kb))]; ok {
					i++ // published by the interrupted run, at this position
					return nil
				}
			}
			chunk = append(chunk, stream.Event{
				Schema: cr.schema, Table: cr.table, Op: stream.OpSnapshot, Key: rel.key(after), After: after,
				Pos: stream.Position{LSN: lsn, Seq: base + i}, CommitTime: at,
			})
			i++
			if len(chunk) >= c.cfg.ChunkEvents {
				if err := p.send(ctx, unit{events: chunk}); err != nil {
					return err
				}
				chunk = make([]stream.Event, 0, c.cfg.ChunkEvents)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(chunk) > 0 {
			if err := p.send(ctx, unit{events: chunk}); err != nil {
				return err
			}
		}
		c.metrics.snapshotRows(ctx, row.table, int64(n))
		t.tp.add(int64(n))
		row.rowsDone += int64(n)
		row.exported = row.rowsDone
		if last != nil {
			row.lastKey = last
		}
		row.done = done
		recorded := row
		if err := p.send(ctx, unit{done: func() { rec.update(recorded) }}); err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}
