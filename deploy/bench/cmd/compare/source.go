package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/starstream/starstream/capture"
)

// The source table: shaped like shop.order_items (7 columns, two numerics), with created_at
// filled by clock_timestamp() at insert. Latency is measured from the transaction's commit
// timestamp, which both tools carry in every record (see analyse.go), not from this column.
const tableDDL = `CREATE TABLE %s (
	order_item_id bigint PRIMARY KEY,
	order_id      bigint NOT NULL,
	product_id    bigint NOT NULL,
	quantity      integer NOT NULL,
	unit_price    numeric(12,2) NOT NULL,
	discount      numeric(12,2) NOT NULL,
	created_at    timestamptz NOT NULL DEFAULT clock_timestamp()
)`

// insertSQL writes the rows $1..$2 in one statement (one transaction in autocommit).
const insertSQL = `INSERT INTO %s (order_item_id, order_id, product_id, quantity, unit_price, discount)
SELECT g, g / 4, (g * 7919) %% 5000, 1 + g %% 5, round(1 + (g %% 10000) / 100.0, 2), round((g %% 7) / 10.0, 2)
FROM generate_series($1::bigint, $2::bigint) AS g`

type source struct {
	dsn    string
	db     *pgx.Conn
	schema string
	table  string // quoted schema.table
}

func connectSource(ctx context.Context, dsn, schema string) (*source, error) {
	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres unreachable at %s (run `make up`): %w", capture.RedactDSN(dsn), err)
	}
	return &source{dsn: dsn, db: db, schema: schema, table: pgx.Identifier{schema, "order_items"}.Sanitize()}, nil
}

func (s *source) Close() { s.db.Close(context.Background()) }

func (s *source) exec(ctx context.Context, sql string, args ...any) error {
	_, err := s.db.Exec(ctx, sql, args...)
	return err
}

// setup creates the schema and table, then for each reader a publication of the table and a
// pgoutput slot, all before the first row is written, so every reader decodes the same WAL.
func (s *source) setup(ctx context.Context, readers []string) error {
	if err := s.exec(ctx, "CREATE SCHEMA "+pgx.Identifier{s.schema}.Sanitize()); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	if err := s.exec(ctx, fmt.Sprintf(tableDDL, s.table)); err != nil {
		return fmt.Errorf("create table: %w", err)
	}
	for _, r := range readers {
		name := s.slotName(r)
		if err := s.exec(ctx, fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s", pgx.Identifier{name}.Sanitize(), s.table)); err != nil {
			return fmt.Errorf("create publication %s: %w", name, err)
		}
		if err := s.exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", name); err != nil {
			return fmt.Errorf("create slot %s: %w", name, err)
		}
	}
	return nil
}

// slotName is the name of a reader's slot and publication.
func (s *source) slotName(reader string) string { return s.schema + "_" + reader }

func (s *source) walLSN(ctx context.Context) (string, error) {
	var lsn string
	err := s.db.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&lsn)
	return lsn, err
}

func (s *source) walBytes(ctx context.Context, from, to string) (int64, error) {
	var n int64
	err := s.db.QueryRow(ctx, "SELECT pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn)::bigint", to, from).Scan(&n)
	return n, err
}

// write inserts rows first..last in transactions of tx rows; with a rate > 0 it paces
// transactions to that many rows per second. It returns when COMMIT returned for each
// transaction, in order.
func (s *source) write(ctx context.Context, first, last int64, tx int, rate float64) ([]time.Time, error) {
	sql := fmt.Sprintf(insertSQL, s.table)
	var commits []time.Time
	start := time.Now()
	for lo, i := first, 0; lo <= last; lo, i = lo+int64(tx), i+1 {
		hi := min(lo+int64(tx)-1, last)
		if rate > 0 {
			due := start.Add(time.Duration(float64(lo-first) / rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				select {
				case <-ctx.Done():
					return commits, ctx.Err()
				case <-time.After(d):
				}
			}
		}
		if _, err := s.db.Exec(ctx, sql, lo, hi); err != nil {
			return commits, fmt.Errorf("insert rows %d..%d: %w", lo, hi, err)
		}
		commits = append(commits, time.Now())
	}
	return commits, nil
}

// walsender returns the PID of the walsender serving slot, waiting up to timeout for one.
func (s *source) walsender(ctx context.Context, slot string, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for {
		var pid *int32
		err := s.db.QueryRow(ctx, "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&pid)
		if err != nil {
			return 0, fmt.Errorf("slot %s: %w", slot, err)
		}
		if pid != nil {
			return int(*pid), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("no walsender on slot %s after %s", slot, timeout)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// dropReader drops a reader's slot (ending a walsender still holding it) and publication.
func dropReader(ctx context.Context, db *pgx.Conn, name string) error {
	var err error
	for i := 0; i < 50; i++ {
		_, err = db.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL`, name)
		if err == nil {
			_, err = db.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, name)
		}
		if err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, perr := db.Exec(ctx, "DROP PUBLICATION IF EXISTS "+pgx.Identifier{name}.Sanitize())
	// capture records the slots it adopts; forget this one.
	_, _ = db.Exec(ctx, "DELETE FROM public.starstream_capture_state WHERE slot_name = $1", name)
	return errors.Join(err, perr)
}

// cleanup drops every reader's slot and publication and the schema.
func (s *source) cleanup(readers []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := pgx.Connect(ctx, s.dsn)
	if err != nil {
		return err
	}
	defer db.Close(ctx)
	var errs []error
	for _, r := range readers {
		errs = append(errs, dropReader(ctx, db, s.slotName(r)))
	}
	_, err = db.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{s.schema}.Sanitize()+" CASCADE")
	return errors.Join(append(errs, err)...)
}

var benchSlot = regexp.MustCompile(`^bench_(\d{8}_\d{6})_[a-z]+$`)

// dropStale drops the inactive slots and publications of earlier runs that did not clean up
// (killed harness): an abandoned slot keeps WAL forever. Only names of this harness's shape
// that are older than an hour are touched.
func dropStale(ctx context.Context, db *pgx.Conn, log func(string, ...any)) {
	rows, err := db.Query(ctx, `SELECT slot_name FROM pg_replication_slots WHERE NOT active AND slot_name LIKE 'bench\_%'`)
	if err != nil {
		return
	}
	names, _ := pgx.CollectRows(rows, pgx.RowTo[string])
	for _, n := range names {
		m := benchSlot.FindStringSubmatch(n)
		if m == nil {
			continue
		}
		t, err := time.Parse("20060102_150405", m[1])
		if err != nil || time.Since(t) < time.Hour {
			continue
		}
		log("dropping stale slot %s of an earlier run", n)
		_ = dropReader(ctx, db, n)
		schema := strings.TrimSuffix(n, n[strings.LastIndexByte(n, '_'):])
		_, _ = db.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
	}
}

// recvlogical finds pg_recvlogical of the server's major version (Debian installs every
// version's tools under /usr/lib/postgresql/<major>/bin), else the one on PATH.
func recvlogical(ctx context.Context, db *pgx.Conn) (string, error) {
	var major string
	if err := db.QueryRow(ctx, "SELECT (current_setting('server_version_num')::int / 10000)::text").Scan(&major); err == nil {
		p := filepath.Join("/usr/lib/postgresql", major, "bin", "pg_recvlogical")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return exec.LookPath("pg_recvlogical")
}
