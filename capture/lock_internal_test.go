package capture

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestLockTablesAndRewritten: against the real PostgreSQL, a lock held by a
// rewrite makes lockTables fail with ErrLockTimeout within its timeout, and a
// TRUNCATE committed between a transaction's snapshot and its lock is found
// by rewritten (the snapshot would read the table as empty).
func TestLockTablesAndRewritten(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dsn := os.Getenv("STARSTREAM_PG_DSN")
	if dsn == "" {
		dsn = "postgres://starstream:starstream@127.0.0.1:15432/starstream?sslmode=disable"
	}
	connect := func() *pgx.Conn {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatalf("postgres unreachable (run `make up`): %v", err)
		}
		t.Cleanup(func() { conn.Close(context.Background()) })
		return conn
	}
	admin, reader := connect(), connect()
	var b [4]byte
	_, _ = rand.Read(b[:])
	schema := "t_lock_" + hex.EncodeToString(b[:])
	tbl := [2]string{schema, "kv"}
	name := pgx.Identifier{schema, "kv"}.Sanitize()
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema+"; CREATE TABLE "+name+" (k int PRIMARY KEY); INSERT INTO "+name+" VALUES (1), (2)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = admin.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE") })

	// A rewrite holds the table: the lock is refused after the timeout.
	hold, err := admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hold.Exec(ctx, "ALTER TABLE "+name+" ALTER COLUMN k TYPE bigint"); err != nil {
		t.Fatal(err)
	}
	tx, err := reader.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = lockTables(ctx, tx, 300*time.Millisecond, tbl)
	if !errors.Is(err, ErrLockTimeout) || time.Since(start) > 5*time.Second {
		t.Fatalf("lock while a rewrite holds the table: %v after %s; want ErrLockTimeout after about 300ms", err, time.Since(start))
	}
	t.Logf("as expected: %v", err)
	_ = tx.Rollback(ctx)
	if err := hold.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	// A snapshot taken, then a TRUNCATE, then the lock: found.
	tx, err = reader.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // read-only
	// The first query takes the snapshot.
	if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	if got, err := rewritten(ctx, tx, tbl); err != nil || len(got) != 0 {
		t.Fatalf("rewritten before any rewrite: %v %v", got, err)
	}
	if _, err := admin.Exec(ctx, "TRUNCATE "+name); err != nil {
		t.Fatal(err)
	}
	if err := lockTables(ctx, tx, time.Second, tbl); err != nil {
		t.Fatal(err)
	}
	got, err := rewritten(ctx, tx, tbl)
	if err != nil || len(got) != 1 || got[0] != schema+".kv" {
		t.Fatalf("rewritten after a TRUNCATE: %v %v; want [%s.kv]", got, err, schema)
	}
}
