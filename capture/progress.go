package capture

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/starstream/starstream/stream"
)

// Progress of the initial snapshot and of backfills lives in a table next to
// the state table ("<StateTable>_progress"), one row per slot, job and table:
// the job is "snapshot" (the initial snapshot) or "backfill-<signal id>".
// A chunk's end key is written only after Kafka acknowledged the chunk, so
// after a crash the job resumes after the last chunk recorded.
const snapshotJob = "snapshot"

// progressRow is one table's progress in a job.
type progressRow struct {
	job, table  string // table is schema.table
	snapshotLSN stream.LSN
	seqBase     uint64     // initial snapshot: rows take positions (snapshotLSN, seqBase+1+index)
	rowsDone    int64      // rows read and acknowledged
	exported    int64      // initial snapshot: rows of it read in the exported snapshot (at snapshotLSN)
	pending     stream.LSN // high watermark of a chunk being published, not yet recorded
	lastKey     []string   // primary key (text) of the last row recorded; nil: from the start
	done        bool
	err         string
}

func (c *Capture) progressTable() string { return c.cfg.StateTable + "_progress" }

func (c *Capture) progressIdent() string {
	s, t, _ := strings.Cut(c.progressTable(), ".")
	return pgx.Identifier{s, t}.Sanitize()
}

func (c *Capture) signalIdent() string {
	s, t, _ := strings.Cut(c.cfg.SignalTable, ".")
	return pgx.Identifier{s, t}.Sanitize()
}

// isInternal reports whether a table is capture's own (state or signal): never published.
func (c *Capture) isInternal(schema, table string) bool {
	n := schema + "." + table
	return n == c.cfg.StateTable || n == c.cfg.SignalTable || n == c.progressTable()
}

func (c *Capture) isSignalTable(schema, table string) bool {
	return schema+"."+table == c.cfg.SignalTable
}

// createProgressAndSignal creates the progress and signal tables (inside the
// state table's creation transaction, under its lock).
func (c *Capture) createProgressAndSignal(ctx context.Context, tx pgx.Tx) error {
	var both bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL`,
		c.progressIdent(), c.signalIdent()).Scan(&both); err != nil {
		return fmt.Errorf("look up progress and signal tables: %w", err)
	}
	if both {
		// Made by an earlier start or by an administrator: a role without
		// CREATE on their schema runs with them as they are.
		return c.upgradeProgress(ctx, tx)
	}
	_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+c.progressIdent()+` (
		slot_name    text NOT NULL,
		job          text NOT NULL,
		table_name   text NOT NULL,
		snapshot_lsn pg_lsn,
		seq_base     int8 NOT NULL DEFAULT 0,
		rows_done    int8 NOT NULL DEFAULT 0,
		exported_rows int8 NOT NULL DEFAULT 0,
		pending_lsn  pg_lsn,
		last_key     text[],
		done         boolean NOT NULL DEFAULT false,
		error        text,
		started_at   timestamptz NOT NULL DEFAULT now(),
		updated_at   timestamptz NOT NULL DEFAULT now(),
		PRIMARY KEY (slot_name, job, table_name)
	)`)
	if err == nil {
		err = c.upgradeProgress(ctx, tx)
	}
	if err != nil {
		return fmt.Errorf("create progress table %s: %w", c.progressTable(), err)
	}
	schema, _, _ := strings.Cut(c.cfg.SignalTable, ".")
	if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize()); err != nil {
		return fmt.Errorf("create signal schema: %w", err)
	}
	_, err = tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+c.signalIdent()+` (
		id         bigserial PRIMARY KEY,
		slot_name  text NOT NULL,
		kind       text NOT NULL CHECK (kind IN ('backfill', 'low', 'high')),
		table_name text,
		chunk      text,
		created_at timestamptz NOT NULL DEFAULT now()
	)`)
	if err != nil {
		return fmt.Errorf("create signal table %s: %w", c.cfg.SignalTable, err)
	}
	return nil
}

// upgradeProgress adds the columns a progress table made before them lacks.
func (c *Capture) upgradeProgress(ctx context.Context, tx pgx.Tx) error {
	for _, col := range []struct{ name, def string }{
		{"exported_rows", "int8 NOT NULL DEFAULT 0"},
		{"pending_lsn", "pg_lsn"},
	} {
		var has bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = $1::regclass
			AND attname = $2 AND NOT attisdropped)`, c.progressIdent(), col.name).Scan(&has); err != nil {
			return fmt.Errorf("inspect progress table %s: %w", c.progressTable(), err)
		}
		if has {
			continue
		}
		if _, err := tx.Exec(ctx, `ALTER TABLE `+c.progressIdent()+` ADD COLUMN `+col.name+` `+col.def); err != nil {
			return fmt.Errorf("upgrade progress table %s: %w", c.progressTable(), err)
		}
	}
	return nil
}

// ensureSignalPublished adds the signal table to the publication: capture
// learns of watermarks and backfill requests through the WAL.
func (c *Capture) ensureSignalPublished(ctx context.Context, db *pgx.Conn) error {
	s, t, _ := strings.Cut(c.cfg.SignalTable, ".")
	var in bool
	if err := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication_tables
		WHERE pubname = $1 AND schemaname = $2 AND tablename = $3)`, c.cfg.Publication, s, t).Scan(&in); err != nil {
		return fmt.Errorf("look up signal table in publication %s: %w", c.cfg.Publication, err)
	}
	if in {
		return nil
	}
	if _, err := db.Exec(ctx, "ALTER PUBLICATION "+pgx.Identifier{c.cfg.Publication}.Sanitize()+" ADD TABLE "+c.signalIdent()); err != nil {
		if qerr := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication_tables
			WHERE pubname = $1 AND schemaname = $2 AND tablename = $3)`, c.cfg.Publication, s, t).Scan(&in); qerr == nil && in {
			return nil // added concurrently
		}
		err = fmt.Errorf("add signal table %s to publication %s (an owner of both can run "+
			"ALTER PUBLICATION %s ADD TABLE %s): %w", c.cfg.SignalTable, c.cfg.Publication, c.cfg.Publication, c.cfg.SignalTable, err)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == sqlInsufficientPrivilege {
			return terminal(fmt.Errorf("%w: %w", ErrPrivilege, err)) // retrying cannot grant it
		}
		return err
	}
	c.log.Info("signal table added to the publication", "table", c.cfg.SignalTable, "publication", c.cfg.Publication)
	return nil
}

// loadProgress returns the slot's progress rows, of one job or of all ("").
func (c *Capture) loadProgress(ctx context.Context, db querier, job string) ([]progressRow, error) {
	rows, err := db.Query(ctx, `SELECT job, table_name, coalesce(snapshot_lsn, '0/0')::text, seq_base, rows_done, exported_rows,
			coalesce(pending_lsn, '0/0')::text, last_key, done, coalesce(error, '')
		FROM `+c.progressIdent()+` WHERE slot_name = $1 AND ($2 = '' OR job = $2) ORDER BY started_at, job, table_name`, c.cfg.Slot, job)
	if err != nil {
		return nil, fmt.Errorf("read progress of slot %s: %w", c.cfg.Slot, err)
	}
	defer rows.Close()
	var out []progressRow
	for rows.Next() {
		var r progressRow
		var lsn, pending string
		var base int64
		if err := rows.Scan(&r.job, &r.table, &lsn, &base, &r.rowsDone, &r.exported, &pending, &r.lastKey, &r.done, &r.err); err != nil {
			return nil, fmt.Errorf("read progress of slot %s: %w", c.cfg.Slot, err)
		}
		r.seqBase = uint64(base)
		if r.snapshotLSN, err = stream.ParseLSN(lsn); err != nil {
			return nil, err
		}
		if r.pending, err = stream.ParseLSN(pending); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// saveProgress inserts or updates one progress row.
func (c *Capture) saveProgress(ctx context.Context, db querier, r progressRow) error {
	var lsn any
	if r.snapshotLSN != 0 {
		lsn = r.snapshotLSN.String()
	}
	var errText any
	if r.err != "" {
		errText = r.err
	}
	_, err := db.Exec(ctx, `INSERT INTO `+c.progressIdent()+` AS p (slot_name, job, table_name, snapshot_lsn, seq_base, rows_done, exported_rows, last_key, done, error)
		VALUES ($1, $2, $3, $4::pg_lsn, $5, $6, $7, $8, $9, $10)
		ON CONFLICT (slot_name, job, table_name) DO UPDATE SET snapshot_lsn = EXCLUDED.snapshot_lsn, seq_base = EXCLUDED.seq_base,
			rows_done = EXCLUDED.rows_done, exported_rows = EXCLUDED.exported_rows, pending_lsn = NULL, last_key = EXCLUDED.last_key,
			done = EXCLUDED.done, error = EXCLUDED.error, updated_at = now()`,
		c.cfg.Slot, r.job, r.table, lsn, int64(r.seqBase), r.rowsDone, r.exported, r.lastKey, r.done, errText)
	if err != nil {
		return fmt.Errorf("record progress of %s (%s): %w", r.table, r.job, err)
	}
	return nil
}

// deleteProgress forgets the slot's progress of job (all jobs if "").
func (c *Capture) deleteProgress(ctx context.Context, db querier, job string) error {
	if _, err := db.Exec(ctx, `DELETE FROM `+c.progressIdent()+` WHERE slot_name = $1 AND ($2 = '' OR job = $2)`, c.cfg.Slot, job); err != nil {
		return fmt.Errorf("clear progress of slot %s: %w", c.cfg.Slot, err)
	}
	return nil
}

// recorder writes snapshot progress from the pipeline's acknowledgement
// callbacks without blocking them: the latest row per table waits for the
// next write.
type recorder struct {
	c       *Capture
	db      querier
	mu      sync.Mutex
	pending map[string]progressRow
	kick    chan struct{}
	stop    chan struct{}
	stopped chan struct{}
	err     error
}

func newRecorder(c *Capture, db querier) *recorder {
	r := &recorder{c: c, db: db, pending: map[string]progressRow{}, kick: make(chan struct{}, 1),
		stop: make(chan struct{}), stopped: make(chan struct{})}
	go r.loop()
	return r
}

// update queues a row; called from the pipeline once Kafka acknowledged it.
func (r *recorder) update(row progressRow) {
	r.mu.Lock()
	r.pending[row.table] = row
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

func (r *recorder) loop() {
	defer close(r.stopped)
	for {
		select {
		case <-r.kick:
			r.write()
		case <-r.stop:
			r.write()
			return
		}
	}
}

func (r *recorder) write() {
	r.mu.Lock()
	rows := r.pending
	r.pending = map[string]progressRow{}
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, row := range rows {
		if err := r.c.saveProgress(ctx, r.db, row); err != nil {
			r.mu.Lock()
			r.err = errors.Join(r.err, err)
			r.mu.Unlock()
		}
	}
}

// close writes what is pending and stops; it returns the first write error.
func (r *recorder) close() error {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	<-r.stopped
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// tableProgress is the progress of one table being read, for logs and metrics.
type tableProgress struct {
	table    string
	job      string
	estimate int64 // pg_class.reltuples (≤ 0: unknown)
	started  time.Time

	mu       sync.Mutex
	rows     int64 // rows read in this run
	prior    int64 // rows read before this run (resumed)
	finished bool
}

func (tp *tableProgress) begin() {
	tp.mu.Lock()
	tp.started = time.Now()
	tp.mu.Unlock()
}

func (tp *tableProgress) add(n int64) {
	tp.mu.Lock()
	tp.rows += n
	tp.mu.Unlock()
}

func (tp *tableProgress) finish() {
	tp.mu.Lock()
	tp.finished = true
	tp.mu.Unlock()
}

// figures returns rows so far (including earlier runs), rows/s of this run, and the ETA (-1 unknown).
func (tp *tableProgress) figures(now time.Time) (rows int64, rate float64, eta time.Duration, done bool) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	rows = tp.prior + tp.rows
	if el := now.Sub(tp.started).Seconds(); el > 0 {
		rate = float64(tp.rows) / el
	}
	eta = -1
	switch {
	case tp.finished:
		eta = 0
	case tp.estimate > 0 && rate > 0:
		eta = time.Duration(float64(max(tp.estimate-rows, 0)) / rate * float64(time.Second))
	}
	return rows, rate, eta, tp.finished
}

func (tp *tableProgress) logArgs(now time.Time) []any {
	rows, rate, eta, _ := tp.figures(now)
	args := []any{"table", tp.table, "job", tp.job, "rows", rows, "rows_per_s", int(rate), "estimated_rows", tp.estimate}
	if eta >= 0 {
		args = append(args, "eta", eta.Round(time.Second).String())
	}
	return args
}

// estimateRows reads the planner's row estimate of a table.
func estimateRows(ctx context.Context, db querier, schema, table string) int64 {
	var n int64
	if err := db.QueryRow(ctx, `SELECT greatest(c.reltuples, 0)::int8 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2`, schema, table).Scan(&n); err != nil {
		return -1
	}
	return n
}

// reportProgress logs the progress of the tables every interval until stop is closed.
func (c *Capture) reportProgress(tables func() []*tableProgress, every time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			now := time.Now()
			for _, tp := range tables() {
				if _, _, _, done := tp.figures(now); !done {
					c.log.Info("snapshot progress", tp.logArgs(now)...)
				}
			}
		}
	}
}

// seqBase spaces the snapshot positions of the i-th table: 2^40 rows each.
func seqBase(i int) uint64 { return uint64(i+1) << 40 }

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
