package capture

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sync/errgroup"

	"github.com/starstream/starstream/capture/internal/pgdecode"
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
// event at (consistent point, running index). SnapshotWorkers connections
// import the same snapshot and read different tables at once; progress (rows,
// rows/s, ETA from the planner's row estimates) is logged every 10 seconds.
func (c *Capture) snapshot(ctx context.Context, slot pglogreplSlot, p *pipeline) error {
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
	tables, err := publicationTables(ctx, workers[0], c.cfg.Publication)
	if err != nil {
		return err
	}
	var estimate int64
	if err := workers[0].QueryRow(ctx, `SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::int8
		FROM pg_publication_tables t JOIN pg_namespace n ON n.nspname = t.schemaname
		JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.tablename WHERE t.pubname = $1`,
		c.cfg.Publication).Scan(&estimate); err != nil {
		return err
	}

	var seq, done atomic.Uint64
	todo := make(chan [2]string, len(tables))
	for _, t := range tables {
		if !c.isStateTable(t[0], t[1]) {
			todo <- t
		}
	}
	close(todo)
	started := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	progressDone := make(chan struct{})
	go func() {
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-progressDone:
				return
			case <-t.C:
				n := done.Load()
				rate := float64(n) / time.Since(started).Seconds()
				args := []any{"rows", n, "rows_per_s", int(rate), "estimated_rows", estimate}
				if left := estimate - int64(n); left > 0 && rate > 0 {
					args = append(args, "eta", (time.Duration(float64(left)/rate) * time.Second).Round(time.Second).String())
				}
				c.log.Info("snapshot progress", args...)
			}
		}
	}()
	defer close(progressDone)
	for _, tx := range workers {
		cat := &typeCatalog{db: tx}
		g.Go(func() error {
			for t := range todo {
				tStart := time.Now()
				n, err := c.snapshotTable(gctx, tx, cat, t[0], t[1], slot, at.UTC(), &seq, p)
				if err != nil {
					return fmt.Errorf("snapshot %s.%s: %w", t[0], t[1], err)
				}
				done.Add(n)
				c.log.Info("snapshot of table read", "table", t[0]+"."+t[1], "rows", n,
					"rows_per_s", int(float64(n)/max(time.Since(tStart).Seconds(), 1e-3)))
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	c.log.Info("snapshot read", "rows", done.Load(), "tables", len(tables), "seconds", int(time.Since(started).Seconds()))
	for _, tx := range workers {
		if err := tx.Commit(ctx); err != nil {
			return err
		}
	}
	return nil
}

// snapshotTable reads one table and returns its row count.
func (c *Capture) snapshotTable(ctx context.Context, tx pgx.Tx, cat pgdecode.Catalog, schema, table string,
	slot pglogreplSlot, at time.Time, seq *atomic.Uint64, p *pipeline) (uint64, error) {
	lsn := slot.consistentPoint
	meta, cols, err := loadTableMeta(ctx, tx, schema, table)
	if err != nil {
		return 0, err
	}
	rel, err := buildRelation(ctx, cat, meta, meta.oid, schema, table, c.cfg.TopicPrefix, cols, nil)
	if err != nil {
		return 0, err
	}
	if err := p.send(ctx, unit{register: rel}); err != nil {
		return 0, err
	}
	if slot.truncateFirst {
		ev := stream.Event{Schema: schema, Table: table, Op: stream.OpTruncate, Pos: stream.Position{LSN: lsn, Seq: seq.Add(1) - 1}, CommitTime: at}
		if err := p.send(ctx, unit{events: []stream.Event{ev}}); err != nil {
			return 0, err
		}
	}
	names := make([]string, len(cols))
	for i, col := range cols {
		names[i] = pgx.Identifier{col.Name}.Sanitize()
	}
	// Simple protocol: every value in text, the format pgoutput sends, so one
	// set of decoders serves both.
	rows, err := tx.Query(ctx, "SELECT "+strings.Join(names, ", ")+" FROM "+pgx.Identifier{schema, table}.Sanitize(),
		pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	chunk := make([]stream.Event, 0, c.cfg.ChunkEvents)
	var total uint64
	for rows.Next() {
		raw := rows.RawValues()
		after := make(map[string]any, len(raw))
		for i, v := range raw {
			if v == nil {
				after[cols[i].Name] = nil
				continue
			}
			val, err := rel.Decode[i](v)
			if err != nil {
				if !errors.Is(err, pgdecode.ErrNotANumber) {
					return total, fmt.Errorf("column %s: %w", cols[i].Name, err)
				}
				val = nil
			}
			after[cols[i].Name] = val
		}
		chunk = append(chunk, stream.Event{
			Schema: schema, Table: table, Op: stream.OpSnapshot, Key: rel.key(after), After: after,
			Pos: stream.Position{LSN: lsn, Seq: seq.Add(1) - 1}, CommitTime: at,
		})
		if len(chunk) >= c.cfg.ChunkEvents {
			if err := p.send(ctx, unit{events: chunk}); err != nil {
				return total, err
			}
			total += uint64(len(chunk))
			c.metrics.snapshotRows(ctx, schema+"."+table, int64(len(chunk)))
			chunk = make([]stream.Event, 0, c.cfg.ChunkEvents)
		}
	}
	if err := rows.Err(); err != nil {
		return total, err
	}
	if len(chunk) > 0 {
		c.metrics.snapshotRows(ctx, schema+"."+table, int64(len(chunk)))
		total += uint64(len(chunk))
		return total, p.send(ctx, unit{events: chunk})
	}
	return total, nil
}
