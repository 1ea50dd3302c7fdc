package capture

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/starstream/starstream/stream"
)

// The state table records, per slot, that this capture created it and whether
// its initial snapshot finished. It lives in the source database so it shares
// the slot's fate: a restored or failed-over database that lost the slot but
// kept the record is detected as a lost slot instead of silently re-snapshotted.
// The record is written before the slot is created, so a slot without a record
// was made by someone else (and is adopted as is, without snapshot).
const stateLockKey = 0x73736361 // "ssca": serialises creation of the state table

type slotState struct {
	exists       bool // the slot exists
	recorded     bool // a state record exists
	snapshotDone bool
	confirmed    stream.LSN
	walStatus    string
	plugin       string
	slotType     string
	database     string
	activePID    int32
}

func (c *Capture) ensureStateTable(ctx context.Context, db *pgx.Conn) error {
	// A least-privilege role cannot create these tables (nor even run CREATE
	// SCHEMA IF NOT EXISTS on an existing schema): an admin creates them
	// beforehand, and capture only needs to read and write them.
	done, err := c.stateTablesReady(ctx, db)
	if err != nil || done {
		return err
	}
	tx, err := db.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	if _, err := tx.Exec(ctx, fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", stateLockKey)); err != nil {
		return fmt.Errorf("lock state table: %w", err)
	}
	schema, _, _ := strings.Cut(c.cfg.StateTable, ".")
	if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize()); err != nil {
		return c.privilegeHint(db, fmt.Errorf("create state schema: %w", err))
	}
	_, err = tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+c.stateIdent()+` (
		slot_name        text PRIMARY KEY,
		publication      text NOT NULL,
		consistent_lsn   pg_lsn,
		snapshot_done    boolean NOT NULL DEFAULT false,
		created_at       timestamptz NOT NULL DEFAULT now(),
		snapshot_done_at timestamptz
	)`)
	if err != nil {
		return c.privilegeHint(db, fmt.Errorf("create state table %s: %w", c.cfg.StateTable, err))
	}
	if err := c.createProgressAndSignal(ctx, tx); err != nil {
		return c.privilegeHint(db, err)
	}
	return tx.Commit(ctx)
}

// stateTablesReady reports whether the state, progress and signal tables all
// exist, in which case capture uses them as they are; one it may not read and
// write is a terminal error naming the GRANT to run.
func (c *Capture) stateTablesReady(ctx context.Context, db *pgx.Conn) (bool, error) {
	tables := []struct{ name, ident, privs string }{
		{c.cfg.StateTable, c.stateIdent(), "SELECT, INSERT, UPDATE, DELETE"},
		{c.progressTable(), c.progressIdent(), "SELECT, INSERT, UPDATE, DELETE"},
		{c.cfg.SignalTable, c.signalIdent(), "SELECT, INSERT, DELETE"},
	}
	for _, t := range tables {
		var exists bool
		if err := db.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, t.ident).Scan(&exists); err != nil {
			return false, fmt.Errorf("look up %s: %w", t.name, err)
		}
		if !exists {
			return false, nil
		}
	}
	role := pgx.Identifier{db.Config().User}.Sanitize()
	for _, t := range tables {
		var ok bool
		if err := db.QueryRow(ctx, `SELECT has_table_privilege($1::regclass, $2)`, t.ident, t.privs).Scan(&ok); err != nil {
			return false, fmt.Errorf("check privileges on %s: %w", t.name, err)
		}
		if !ok {
			return false, terminalf("%w: role %s may not use capture's table %s: as an admin run GRANT %s ON %s TO %s",
				ErrPrivilege, db.Config().User, t.name, t.privs, t.ident, role)
		}
	}
	// The signal table's id comes from its sequence.
	var seqOK bool
	if err := db.QueryRow(ctx, `SELECT coalesce(has_sequence_privilege(pg_get_serial_sequence($1, 'id'), 'USAGE'), true)`,
		c.signalIdent()).Scan(&seqOK); err != nil {
		return false, fmt.Errorf("check privileges on the sequence of %s: %w", c.cfg.SignalTable, err)
	}
	if !seqOK {
		return false, terminalf("%w: role %s may not use the id sequence of %s: as an admin run "+
			"GRANT USAGE ON SEQUENCE %s_id_seq TO %s", ErrPrivilege, db.Config().User, c.cfg.SignalTable, c.cfg.SignalTable, role)
	}
	tx, err := db.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	if err := c.upgradeProgress(ctx, tx); err != nil {
		return false, c.privilegeHint(db, err)
	}
	return true, tx.Commit(ctx)
}

// privilegeHint makes a permission error creating the state table terminal and
// says what the admin must do.
func (c *Capture) privilegeHint(db *pgx.Conn, err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != sqlInsufficientPrivilege {
		return err
	}
	return terminalf("%w: %w; role %s may not create or alter capture's tables: as an admin create %s, %s and %s "+
		"and make the role their owner (deploy/local/postgres.sh shows how)",
		ErrPrivilege, err, db.Config().User, c.cfg.StateTable, c.progressTable(), c.cfg.SignalTable)
}

func (c *Capture) stateIdent() string {
	s, t, _ := strings.Cut(c.cfg.StateTable, ".")
	return pgx.Identifier{s, t}.Sanitize()
}

func (c *Capture) inspectSlot(ctx context.Context, db *pgx.Conn) (slotState, error) {
	var st slotState
	var confirmed *string
	var walStatus, plugin, database *string
	var pid *int32
	err := db.QueryRow(ctx, `SELECT confirmed_flush_lsn::text, wal_status, plugin, slot_type, database, active_pid
		FROM pg_replication_slots WHERE slot_name = $1`, c.cfg.Slot).
		Scan(&confirmed, &walStatus, &plugin, &st.slotType, &database, &pid)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return st, fmt.Errorf("inspect slot %s: %w", c.cfg.Slot, err)
	default:
		st.exists = true
		st.walStatus, st.plugin, st.database = deref(walStatus), deref(plugin), deref(database)
		if pid != nil {
			st.activePID = *pid
		}
		if confirmed != nil {
			if st.confirmed, err = stream.ParseLSN(*confirmed); err != nil {
				return st, err
			}
		}
	}
	err = db.QueryRow(ctx, `SELECT snapshot_done FROM `+c.stateIdent()+` WHERE slot_name = $1`, c.cfg.Slot).Scan(&st.snapshotDone)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return st, fmt.Errorf("read capture state of %s: %w", c.cfg.Slot, err)
	default:
		st.recorded = true
	}
	return st, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// checkSlot turns an unusable slot into a terminal error naming the recovery.
func (c *Capture) checkSlot(st slotState, dbName string) error {
	recovery := fmt.Sprintf("to start over with a new snapshot run `starstream capture reset --slot %s` "+
		"(capture.Reset: drops the slot if it exists and marks its snapshot undone in %s), then restart capture",
		c.cfg.Slot, c.cfg.StateTable)
	switch {
	case !st.exists && st.recorded && st.snapshotDone:
		return terminalf("%w: slot %s was created and snapshotted by capture but no longer exists "+
			"(dropped, or the database was restored or failed over); changes since its last confirmed position are unknown; %s",
			ErrSlotLost, c.cfg.Slot, recovery)
	case st.exists && st.walStatus == "lost":
		return terminalf("%w: slot %s has wal_status %q: PostgreSQL removed WAL it still needed "+
			"(max_slot_wal_keep_size); changes were lost; %s", ErrSlotInvalidated, c.cfg.Slot, st.walStatus, recovery)
	case st.exists && (st.slotType != "logical" || st.plugin != "pgoutput"):
		return terminalf("%w: slot %s is a %s slot with plugin %q, not a logical pgoutput slot",
			ErrSlotMismatch, c.cfg.Slot, st.slotType, st.plugin)
	case st.exists && st.database != dbName:
		return terminalf("%w: slot %s belongs to database %q, not %q", ErrSlotMismatch, c.cfg.Slot, st.database, dbName)
	}
	return nil
}

// ensurePublication creates the publication if it does not exist.
func (c *Capture) ensurePublication(ctx context.Context, db *pgx.Conn) error {
	var exists bool
	if err := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)`,
		c.cfg.Publication).Scan(&exists); err != nil {
		return fmt.Errorf("look up publication %s: %w", c.cfg.Publication, err)
	}
	if exists {
		return nil
	}
	var what []string
	if len(c.cfg.Tables) > 0 {
		for _, t := range c.cfg.Tables {
			s, n, _ := strings.Cut(t, ".")
			what = append(what, pgx.Identifier{s, n}.Sanitize())
		}
	} else {
		for _, s := range c.cfg.Schemas {
			what = append(what, pgx.Identifier{s}.Sanitize())
		}
	}
	sql := "CREATE PUBLICATION " + pgx.Identifier{c.cfg.Publication}.Sanitize()
	if len(c.cfg.Tables) > 0 {
		sql += " FOR TABLE " + strings.Join(what, ", ")
	} else {
		sql += " FOR TABLES IN SCHEMA " + strings.Join(what, ", ")
	}
	if _, err := db.Exec(ctx, sql); err != nil {
		var exists bool
		if qerr := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)`,
			c.cfg.Publication).Scan(&exists); qerr == nil && exists {
			return nil // created concurrently by a peer
		}
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == sqlInsufficientPrivilege {
			// CREATE PUBLICATION needs ownership of the tables (superuser for
			// FOR TABLES IN SCHEMA): a least-privilege capture role relies on
			// the admin creating it first.
			// The signal table goes in too: the role cannot add it later.
			return terminalf("%w: publication %s does not exist and role %s may not create it (%s); "+
				"as an admin (table owner or superuser) run: %s, TABLE %s", ErrPrivilege, c.cfg.Publication,
				db.Config().User, pgErr.Message, sql, c.signalIdent())
		}
		return fmt.Errorf("create publication %s: %w", c.cfg.Publication, err)
	}
	c.log.Info("created publication", "publication", c.cfg.Publication, "tables", strings.Join(what, ", "))
	return nil
}

// Reset drops the slot (if it exists) and marks its initial snapshot as not
// done, so the next Run creates a new slot and takes a new snapshot, preceded
// by a truncate event per table that clears rows deleted while no slot
// tracked them. It is the recovery for ErrSlotLost and ErrSlotInvalidated;
// the publication is kept. Snapshot and backfill progress of the slot is
// forgotten.
func Reset(ctx context.Context, cfg Config) error {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	c := &Capture{cfg: cfg}
	db, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer db.Close(context.WithoutCancel(ctx))
	if _, err := db.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`,
		cfg.Slot); err != nil {
		return fmt.Errorf("drop slot %s: %w", cfg.Slot, err)
	}
	if err := c.ensureStateTable(ctx, db); err != nil {
		return err
	}
	if _, err := db.Exec(ctx, `UPDATE `+c.stateIdent()+` SET snapshot_done = false, snapshot_done_at = NULL
		WHERE slot_name = $1`, cfg.Slot); err != nil {
		return fmt.Errorf("reset state of slot %s: %w", cfg.Slot, err)
	}
	return c.deleteProgress(ctx, db, "")
}

// sqlInsufficientPrivilege is SQLSTATE 42501 (permission denied, must be owner).
const sqlInsufficientPrivilege = "42501"
