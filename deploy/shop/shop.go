// Package shop builds and drives the e-commerce source database that
// starstream captures: it creates the schema of DESIGN §3, seeds it with
// deterministic sample data, generates continuous realistic traffic, and
// offers small helpers that tests use to make precise changes.
//
// Every function takes the schema to work in, so tests can each use their
// own schema of the same database; SQL names are qualified with it rather than
// relying on a session search_path, which a connection pool would not keep.
package shop

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/starstream/starstream/deploy/postgres"
)

// DefaultSchema is the schema used when a config leaves it empty.
const DefaultSchema = "shop"

// DB is what this package needs from PostgreSQL. *pgx.Conn, *pgxpool.Pool and
// pgx.Tx all satisfy it; with a pgx.Tx, the helpers' own transactions become
// savepoints of the caller's.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Begin(ctx context.Context) (pgx.Tx, error)
	CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error)
}

// The package's callers pass connections, pools and transactions alike.
// (*pgxpool.Pool satisfies DB too; it is not asserted here to keep pgxpool
// out of this package's dependencies.)
var (
	_ DB = (*pgx.Conn)(nil)
	_ DB = pgx.Tx(nil)
)

// createLockKey serialises concurrent Create calls: CREATE SCHEMA IF NOT
// EXISTS and CREATE TYPE race with each other on the catalog otherwise.
const createLockKey = 0x73686f70 // "shop"

// Create creates schema if needed and the shop tables, types and indexes in
// it. It is idempotent: calling it on an existing schema changes nothing.
func Create(ctx context.Context, db DB, schema string) error {
	if schema == "" {
		schema = DefaultSchema
	}
	tx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("create schema %s: begin: %w", schema, err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	ident := pgx.Identifier{schema}.Sanitize()
	steps := []struct{ what, sql string }{
		{"lock", fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", createLockKey)},
		{"create schema", "CREATE SCHEMA IF NOT EXISTS " + ident},
		{"set search_path", "SET LOCAL search_path TO " + ident},
		{"load ddl", postgres.SchemaSQL},
	}
	for _, s := range steps {
		if _, err := tx.Exec(ctx, s.sql); err != nil {
			return fmt.Errorf("create schema %s: %s: %w", schema, s.what, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("create schema %s: commit: %w", schema, err)
	}
	return nil
}

// Drop removes schema and everything in it. Tests call it in their cleanup.
// A session still ending on the schema's tables (a writer just cancelled) can
// make PostgreSQL pick the drop as a deadlock victim; dropping is idempotent,
// so that is tried again a few times.
func Drop(ctx context.Context, db DB, schema string) error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if _, err = db.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err == nil {
			return nil
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "40P01" {
			break
		}
		time.Sleep(time.Duration(attempt+1) * 100 * time.Millisecond)
	}
	return fmt.Errorf("drop schema %s: %w", schema, err)
}

// Tables lists the shop tables in foreign-key order: each table only
// references tables before it.
func Tables() []string {
	return []string{
		"sellers", "customers", "products", "campaigns", "orders",
		"order_items", "inventory", "cart_events", "campaign_events", "page_views",
	}
}

// qualify replaces every "{s}" in query with the quoted schema name.
func qualify(schema, query string) string {
	if schema == "" {
		schema = DefaultSchema
	}
	return strings.ReplaceAll(query, "{s}", pgx.Identifier{schema}.Sanitize())
}

// inTx runs fn in a transaction of db (a savepoint when db is itself a
// transaction), committing when fn succeeds.
func inTx(ctx context.Context, db DB, fn func(tx pgx.Tx) error) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// execOne runs an UPDATE that must touch exactly one row.
func execOne(ctx context.Context, db DB, query string, args ...any) error {
	tag, err := db.Exec(ctx, query, args...)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// nullID maps the zero id, which no row has, to SQL NULL.
func nullID(id int64) *int64 {
	if id == 0 {
		return nil
	}
	return &id
}
