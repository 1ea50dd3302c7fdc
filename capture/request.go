package capture

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// A backfill is requested by a row in the signal table (kind "backfill"):
// the running capture of the slot sees it in the WAL, records a job in the
// progress table and reads the table DBLog-style while it streams. A request
// made while capture is down waits in the WAL (the slot keeps it) and runs
// when capture starts. The job is named "backfill-<id of the request row>".

// BackfillStatus is the progress of one backfill job.
type BackfillStatus struct {
	Job      string
	Table    string
	Seen     bool  // capture has picked the request up
	Rows     int64 // rows read and acknowledged by Kafka
	Done     bool
	Error    string // set when the job ended without reading (e.g. the table is not captured)
	Estimate int64  // pg_class.reltuples of the table
}

// RequestBackfill asks the capture of cfg.Slot to re-read table
// ("schema.table") while it streams, and returns the job's name. It needs
// INSERT on the signal table, which capture creates at its first start.
func RequestBackfill(ctx context.Context, cfg Config, table string) (string, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return "", err
	}
	if s, t, ok := strings.Cut(table, "."); !ok || s == "" || t == "" || strings.Contains(t, ".") {
		return "", fmt.Errorf("table %q is not schema.table", table)
	}
	c := &Capture{cfg: cfg}
	db, err := c.connect(ctx)
	if err != nil {
		return "", err
	}
	defer db.Close(context.WithoutCancel(ctx))
	var id int64
	err = db.QueryRow(ctx, `INSERT INTO `+c.signalIdent()+` (slot_name, kind, table_name) VALUES ($1, 'backfill', $2) RETURNING id`,
		cfg.Slot, table).Scan(&id)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" {
		return "", fmt.Errorf("signal table %s does not exist: start capture once first (it creates it): %w", cfg.SignalTable, err)
	}
	if err != nil {
		return "", fmt.Errorf("request backfill of %s: %w", table, err)
	}
	return fmt.Sprintf("backfill-%d", id), nil
}

// Backfill returns the status of a backfill job of cfg.Slot.
func Backfill(ctx context.Context, cfg Config, job string) (BackfillStatus, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return BackfillStatus{}, err
	}
	c := &Capture{cfg: cfg}
	db, err := c.connect(ctx)
	if err != nil {
		return BackfillStatus{}, err
	}
	defer db.Close(context.WithoutCancel(ctx))
	st := BackfillStatus{Job: job}
	rows, err := c.loadProgress(ctx, db, job)
	if err != nil {
		return st, err
	}
	if len(rows) == 0 {
		return st, nil
	}
	r := rows[0]
	st.Table, st.Seen, st.Rows, st.Done, st.Error = r.table, true, r.rowsDone, r.done, r.err
	if s, t, ok := strings.Cut(r.table, "."); ok {
		st.Estimate = estimateRows(ctx, db, s, t)
	}
	return st, nil
}
