package capture

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

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
// event at (consistent point, running index).
func (c *Capture) snapshot(ctx context.Context, slot pglogreplSlot, p *pipeline) error {
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
	var at time.Time
	if err := tx.QueryRow(ctx, "SELECT now()").Scan(&at); err != nil {
		return err
	}
	tables, err := publicationTables(ctx, tx, c.cfg.Publication)
	if err != nil {
		return err
	}
	cat := &typeCatalog{db: tx}
	var seq uint64
	for _, t := range tables {
		if c.isStateTable(t[0], t[1]) {
			continue
		}
		started, before := time.Now(), seq
		if err := c.snapshotTable(ctx, tx, cat, t[0], t[1], slot, at.UTC(), &seq, p); err != nil {
			return fmt.Errorf("snapshot %s.%s: %w", t[0], t[1], err)
		}
		n := seq - before
		c.log.Info("snapshot of table read", "table", t[0]+"."+t[1], "rows", n,
			"rows_per_s", int(float64(n)/max(time.Since(started).Seconds(), 1e-3)))
	}
	return tx.Commit(ctx)
}

func (c *Capture) snapshotTable(ctx context.Context, tx pgx.Tx, cat pgdecode.Catalog, schema, table string,
	slot pglogreplSlot, at time.Time, seq *uint64, p *pipeline) error {
	lsn := slot.consistentPoint
	meta, cols, err := loadTableMeta(ctx, tx, schema, table)
	if err != nil {
		return err
	}
	rel, err := buildRelation(ctx, cat, meta, meta.oid, schema, table, c.cfg.TopicPrefix, cols, nil)
	if err != nil {
		return err
	}
	if err := p.send(ctx, unit{register: rel}); err != nil {
		return err
	}
	if slot.truncateFirst {
		ev := stream.Event{Schema: schema, Table: table, Op: stream.OpTruncate, Pos: stream.Position{LSN: lsn, Seq: *seq}, CommitTime: at}
		*seq++
		if err := p.send(ctx, unit{events: []stream.Event{ev}}); err != nil {
			return err
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
		return err
	}
	defer rows.Close()
	chunk := make([]stream.Event, 0, c.cfg.ChunkEvents)
	var total int64
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
					return fmt.Errorf("column %s: %w", cols[i].Name, err)
				}
				val = nil
			}
			after[cols[i].Name] = val
		}
		chunk = append(chunk, stream.Event{
			Schema: schema, Table: table, Op: stream.OpSnapshot, Key: rel.key(after), After: after,
			Pos: stream.Position{LSN: lsn, Seq: *seq}, CommitTime: at,
		})
		*seq++
		if len(chunk) >= c.cfg.ChunkEvents {
			if err := p.send(ctx, unit{events: chunk}); err != nil {
				return err
			}
			total += int64(len(chunk))
			c.metrics.snapshotRows(ctx, schema+"."+table, int64(len(chunk)))
			chunk = make([]stream.Event, 0, c.cfg.ChunkEvents)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(chunk) > 0 {
		c.metrics.snapshotRows(ctx, schema+"."+table, int64(len(chunk)))
		return p.send(ctx, unit{events: chunk})
	}
	return nil
}
