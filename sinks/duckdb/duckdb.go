// Package duckdb is the embedded warehouse: a sinks.Sink on a DuckDB file (or in
// memory) that applies idempotent, position-guarded upserts.
//
// # Tables and views
//
// A table "orders" is stored as the physical table "orders__rows": the user
// columns, the primary key, and three bookkeeping columns: _pos_lsn and _pos_seq
// (the position of the version stored) and _deleted (a tombstone flag). Users
// query the view "orders", which shows the live rows with the user columns only,
// so `SELECT * FROM orders` reads like the source table. Descriptions become
// comments on both. Only key columns are NOT NULL in the physical table: a
// tombstone for a key never seen has no other values; Write enforces the
// definition's NOT NULL columns on upserts instead.
//
// # Writes
//
// Write is idempotent and position-guarded: a row's version replaces the stored
// one only if its position is newer, so replaying batches, applying them out of
// order or retrying a batch that did commit changes nothing. A Delete keeps a
// tombstone with its position, so a late older Upsert cannot resurrect the row,
// while a newer Upsert revives it. A batch is applied set-based in one
// transaction: rows are validated and reduced to the newest version per key in
// Go, appended to a temporary staging table with the DuckDB Appender, and merged
// with a single INSERT … SELECT … ON CONFLICT DO UPDATE … WHERE newer. Write returns once the
// transaction committed (durable in the WAL for a file).
//
// Writes and schema changes are serialised on one connection: DuckDB runs each
// statement on all cores anyway, allows one writing process per file, and this
// keeps concurrent pipelines from conflicting. Queries use other connections and
// read the last committed state.
//
// # Cost
//
// DuckDB 1.5 plans ON CONFLICT as a hash join against a scan of the key and
// position columns of the target, pruned by the batch's min/max key and a bloom
// filter, not as index probes. Batches of clustered keys (new ids, recent rows)
// touch little; batches scattered over a large table pay a scan of those columns
// each, about 60 ms per batch on a 1M-row table. Larger batches amortise it.
package duckdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/starstream/starstream/sinks"
)

// Writer is the DuckDB sink. It is safe for concurrent use.
type Writer struct {
	db     *sql.DB
	logger *slog.Logger
	memory bool

	mu     sync.Mutex        // serialises conn: writes and DDL
	conn   *sql.Conn         // the one writing connection; staging tables live on it
	staged map[string]*table // the table version each staging table on conn was made for
	closed bool

	tmu    sync.RWMutex
	tables map[string]*table // ensured tables
}

var _ sinks.Sink = (*Writer)(nil)

// Open opens (creating if needed) the DuckDB database at path; "" or ":memory:"
// opens a private in-memory database.
func Open(path string, logger *slog.Logger) (*Writer, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	memory := path == "" || path == ":memory:"
	if memory {
		path = ""
	}
	connector, err := duckdb.NewConnector(path, nil)
	if err != nil {
		return nil, fmt.Errorf("open duckdb %q: %w", path, err)
	}
	db := sql.OpenDB(connector)
	conn, err := db.Conn(context.Background())
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open duckdb %q: %w", path, err)
	}
	logger.Debug("duckdb opened", "path", path)
	return &Writer{db: db, logger: logger, memory: memory, conn: conn, staged: map[string]*table{}, tables: map[string]*table{}}, nil
}

// EnsureTable creates the table and its view if missing, adds the nullable
// columns the definition gained and refreshes the view and comments. It refuses
// (sinks.ErrInvalidTable) a definition that changes the key or a column's type.
func (w *Writer) EnsureTable(ctx context.Context, t sinks.Table) error {
	if err := checkDefinition(t); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	tb, err := w.ensure(ctx, t)
	if err != nil {
		return fmt.Errorf("ensure table %s: %w", t.Name, classify(err))
	}
	w.tmu.Lock()
	w.tables[t.Name] = tb
	w.tmu.Unlock()
	return nil
}

func (w *Writer) ensure(ctx context.Context, t sinks.Table) (tb *table, err error) {
	err = w.inTx(ctx, func() error {
		existing, key, err := physicalColumns(ctx, w.conn, t.Name)
		if err != nil {
			return err
		}
		stmts, err := ddl(t, existing, key)
		if err != nil {
			return err
		}
		for _, s := range stmts {
			if _, err := w.conn.ExecContext(ctx, s); err != nil {
				return fmt.Errorf("%s: %w", s, err)
			}
		}
		physical, _, err := physicalColumns(ctx, w.conn, t.Name)
		if err != nil {
			return err
		}
		tb, err = newTable(t, physical)
		return err
	})
	return tb, err
}

// Write applies rows to table in one transaction; see the package doc. Rows that
// do not fit the table come back as RowErrors and the others are written.
func (w *Writer) Write(ctx context.Context, table string, rows []sinks.Row) ([]sinks.RowError, error) {
	w.tmu.RLock()
	tb, ok := w.tables[table]
	w.tmu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("write %s: %w", table, sinks.ErrUnknownTable)
	}
	start := time.Now()
	vals, n, rowErrs := tb.stageRows(rows) // outside the lock: other pipelines keep writing
	if n == 0 {
		return rowErrs, nil
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil, ErrClosed
	}
	if err := w.inTx(ctx, func() error { return w.apply(ctx, tb, vals) }); err != nil {
		delete(w.staged, table) // the rollback may have undone its creation
		return nil, fmt.Errorf("write %s: %w", table, classify(err))
	}
	w.staged[table] = tb
	w.logger.Debug("duckdb write", "table", table, "rows", n, "refused", len(rowErrs), "elapsed", time.Since(start))
	return rowErrs, nil
}

// apply stages the converted rows and merges them; the caller holds mu and the
// transaction. The staging table stays on the connection, emptied, for the next
// batch: creating one per batch costs more than the merge of a small batch.
func (w *Writer) apply(ctx context.Context, tb *table, vals []driver.Value) error {
	if w.staged[tb.name] != tb {
		if _, err := w.conn.ExecContext(ctx, tb.stageDDL); err != nil {
			return fmt.Errorf("create staging table: %w", err)
		}
	}
	err := w.conn.Raw(func(dc any) error {
		a, err := duckdb.NewAppender(dc.(driver.Conn), "temp", "main", stagePrefix+tb.name)
		if err != nil {
			return err
		}
		width := tb.stageWidth()
		for i := 0; i < len(vals); i += width {
			if err := a.AppendRow(vals[i : i+width]...); err != nil {
				a.Close()
				return err
			}
		}
		return a.Close()
	})
	if err != nil {
		return fmt.Errorf("append to staging table: %w", err)
	}
	if _, err := w.conn.ExecContext(ctx, tb.merge); err != nil {
		return fmt.Errorf("merge: %w", err)
	}
	if _, err := w.conn.ExecContext(ctx, tb.stageClear); err != nil {
		return fmt.Errorf("clear staging table: %w", err)
	}
	return nil
}

// inTx runs f in a transaction on the writing connection and commits; the caller holds mu.
func (w *Writer) inTx(ctx context.Context, f func() error) error {
	if _, err := w.conn.ExecContext(ctx, "BEGIN TRANSACTION"); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := f(); err != nil {
		// Roll back even when ctx is what failed.
		if _, rerr := w.conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK"); rerr != nil {
			return errors.Join(err, fmt.Errorf("rollback: %w", rerr))
		}
		return err
	}
	if _, err := w.conn.ExecContext(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// Query runs a read query for users (starstream query) and tests and returns the
// column names and all rows. Values come as the driver scans them, except
// DECIMAL (NUMERIC) which comes as *big.Rat; JSON comes decoded (map, slice, …)
// unless the query casts it to VARCHAR.
func (w *Writer) Query(ctx context.Context, query string, args ...any) (columns []string, rows [][]any, err error) {
	rs, err := w.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, nil, fmt.Errorf("query: %w", err)
	}
	defer rs.Close()
	if columns, err = rs.Columns(); err != nil {
		return nil, nil, fmt.Errorf("query: %w", err)
	}
	for rs.Next() {
		vals := make([]any, len(columns))
		ptrs := make([]any, len(columns))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rs.Scan(ptrs...); err != nil {
			return nil, nil, fmt.Errorf("query: %w", err)
		}
		for i, v := range vals {
			if d, ok := v.(duckdb.Decimal); ok {
				vals[i] = ratFromDecimal(d.Value, d.Scale)
			}
		}
		rows = append(rows, vals)
	}
	if err := rs.Err(); err != nil {
		return nil, nil, fmt.Errorf("query: %w", err)
	}
	return columns, rows, nil
}

// Close waits for running writes, checkpoints a file database and closes it.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	var errs []error
	if !w.memory {
		// Fold the WAL into the file now rather than on the next open.
		if _, err := w.conn.ExecContext(context.Background(), "CHECKPOINT"); err != nil {
			errs = append(errs, fmt.Errorf("checkpoint: %w", err))
		}
	}
	errs = append(errs, w.conn.Close(), w.db.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close duckdb: %w", err)
	}
	return nil
}
