package capture

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/starstream/starstream/capture/internal/pgdecode"
)

// chunkReader reads a table in chunks of rows in primary-key order (keyset
// pagination: WHERE (pk) > (last key) ORDER BY pk LIMIT n), so that a chunk's
// end key is where the next one starts, in this run or after a crash. A
// table without a primary key is read in one chunk.
type chunkReader struct {
	rel    *relation
	schema string
	table  string
	cols   []sourceColumn
	pkIdx  []int    // positions of the key columns in cols, in index order
	pkCast []string // their types, for the literals of the last key
	sel    string   // SELECT columns FROM table
	where  string   // WHERE (key) > (last key), keyed tables only
	pkCols string   // the key columns, keyed tables only
	order  string   // ORDER BY key, keyed tables only
}

func newChunkReader(ctx context.Context, db querier, cat pgdecode.Catalog, schema, table, prefix string) (*chunkReader, error) {
	meta, cols, err := loadTableMeta(ctx, db, schema, table)
	if err != nil {
		return nil, err
	}
	rel, err := buildRelation(ctx, cat, meta, meta.oid, schema, table, prefix, cols, nil)
	if err != nil {
		return nil, err
	}
	cr := &chunkReader{rel: rel, schema: schema, table: table, cols: cols}
	rows, err := db.Query(ctx, `SELECT a.attname, format_type(a.atttypid, a.atttypmod)
		FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
		WHERE i.indrelid = $1 AND i.indisprimary
		ORDER BY array_position(i.indkey::int2[], a.attnum)`, meta.oid)
	if err != nil {
		return nil, fmt.Errorf("read primary key of %s.%s: %w", schema, table, err)
	}
	var order []string
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			rows.Close()
			return nil, err
		}
		for i, c := range cols {
			if c.Name == name {
				cr.pkIdx = append(cr.pkIdx, i)
				cr.pkCast = append(cr.pkCast, typ)
			}
		}
		order = append(order, pgx.Identifier{name}.Sanitize())
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(cr.pkIdx) != len(order) {
		cr.pkIdx, cr.pkCast, order = nil, nil, nil // a key column is not readable: one chunk
	}
	names := make([]string, len(cols))
	for i, col := range cols {
		names[i] = pgx.Identifier{col.Name}.Sanitize()
	}
	cr.sel = "SELECT " + strings.Join(names, ", ") + " FROM " + pgx.Identifier{schema, table}.Sanitize()
	if len(order) > 0 {
		params := make([]string, len(order))
		for i := range order {
			params[i] = fmt.Sprintf("$%d::%s", i+1, cr.pkCast[i])
		}
		cr.pkCols = strings.Join(order, ", ")
		cr.where = " WHERE (" + cr.pkCols + ") > (" + strings.Join(params, ", ") + ")"
		cr.order = " ORDER BY " + strings.Join(order, ", ")
	}
	return cr, nil
}

// keyed reports whether the table is read in several chunks.
func (cr *chunkReader) keyed() bool { return len(cr.pkIdx) > 0 }

// read reads the chunk after key after (nil: from the start), up to limit
// rows, calling fn with each row's values (text, as pgoutput sends them:
// one set of decoders serves both). It returns the chunk's last key and its
// row count, and whether the table is done (the chunk was short).
func (cr *chunkReader) read(ctx context.Context, db querier, after []string, limit int,
	fn func(raw [][]byte) error) ([]string, int, bool, error) {
	sql := cr.sel
	var args []any
	switch {
	case !cr.keyed():
	case after == nil:
		sql += cr.order + fmt.Sprintf(" LIMIT %d", limit)
	default:
		sql += cr.where + cr.order + fmt.Sprintf(" LIMIT %d", limit)
		for _, v := range after {
			args = append(args, v)
		}
	}
	rows, err := db.Query(ctx, sql, append([]any{pgx.QueryExecModeSimpleProtocol}, args...)...)
	if err != nil {
		return nil, 0, false, fmt.Errorf("read %s.%s: %w", cr.schema, cr.table, err)
	}
	defer rows.Close()
	var last []string
	n := 0
	for rows.Next() {
		raw := rows.RawValues()
		if err := fn(raw); err != nil {
			return nil, n, false, err
		}
		n++
		if cr.keyed() {
			if last == nil {
				last = make([]string, len(cr.pkIdx))
			}
			for i, j := range cr.pkIdx {
				last[i] = string(raw[j])
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, n, false, fmt.Errorf("read %s.%s: %w", cr.schema, cr.table, err)
	}
	return last, n, !cr.keyed() || n < limit, nil
}

// rawKey returns the text of a row's key columns, as read returns the last
// key: what readKeys takes.
func (cr *chunkReader) rawKey(raw [][]byte) []string {
	k := make([]string, len(cr.pkIdx))
	for i, j := range cr.pkIdx {
		k[i] = string(raw[j])
	}
	return k
}

// readKeys reads the rows of the given keys (of a keyed table, as rawKey
// returns them) that exist, calling fn with each one's values.
func (cr *chunkReader) readKeys(ctx context.Context, db querier, keys [][]string, fn func(raw [][]byte) error) error {
	for len(keys) > 0 {
		batch := keys[:min(len(keys), 500)]
		keys = keys[len(batch):]
		tuples := make([]string, len(batch))
		args := []any{pgx.QueryExecModeSimpleProtocol}
		for t, k := range batch {
			ps := make([]string, len(k))
			for i, v := range k {
				args = append(args, v)
				ps[i] = fmt.Sprintf("$%d::%s", len(args)-1, cr.pkCast[i])
			}
			tuples[t] = "(" + strings.Join(ps, ", ") + ")"
		}
		rows, err := db.Query(ctx, cr.sel+" WHERE ("+cr.pkCols+") IN ("+strings.Join(tuples, ", ")+")", args...)
		if err != nil {
			return fmt.Errorf("read keys of %s.%s: %w", cr.schema, cr.table, err)
		}
		for rows.Next() {
			if err := fn(rows.RawValues()); err != nil {
				rows.Close()
				return err
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read keys of %s.%s: %w", cr.schema, cr.table, err)
		}
	}
	return nil
}

// decode turns a row's text values into column values.
func (cr *chunkReader) decode(raw [][]byte) (map[string]any, error) {
	after := make(map[string]any, len(raw))
	for i, v := range raw {
		name := cr.cols[i].Name
		if v == nil {
			after[name] = nil
			continue
		}
		val, err := cr.rel.Decode[i](v)
		if err != nil {
			if !errors.Is(err, pgdecode.ErrNotANumber) {
				return nil, fmt.Errorf("column %s: %w", name, err)
			}
			val = nil
		}
		after[name] = val
	}
	return after, nil
}

// lockTables takes ACCESS SHARE locks on tables (schema, name) in tx, waiting
// at most timeout. TRUNCATE and the table-rewriting forms of ALTER TABLE are
// not MVCC-safe: a transaction whose snapshot was taken before such a
// rewrite committed reads the new file through that snapshot and sees no
// rows at all. Holding the lock keeps rewrites out while the transaction
// reads; taken before the snapshot (LOCK takes none), it makes the snapshot
// see a rewrite that committed meanwhile. SELECT on a table suffices for the
// lock, so the least-privilege role can take it.
func lockTables(ctx context.Context, tx pgx.Tx, timeout time.Duration, tables ...[2]string) error {
	if len(tables) == 0 {
		return nil
	}
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = pgx.Identifier{t[0], t[1]}.Sanitize()
	}
	if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL lock_timeout = %d", max(timeout.Milliseconds(), 1))); err != nil {
		return fmt.Errorf("set lock timeout: %w", err)
	}
	_, err := tx.Exec(ctx, "LOCK TABLE "+strings.Join(names, ", ")+" IN ACCESS SHARE MODE")
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "55P03" { // lock_not_available
		return fmt.Errorf("%w: %s not granted within %s (a schema change or TRUNCATE holds it): %w",
			ErrLockTimeout, strings.Join(names, ", "), timeout, err)
	}
	if err != nil {
		return fmt.Errorf("lock %s: %w", strings.Join(names, ", "), err)
	}
	return nil
}

// rewritten returns those of tables (locked by tx) whose file changed
// since tx's snapshot was taken: TRUNCATE or a table-rewriting ALTER TABLE
// committed between the snapshot and the lock, so the snapshot would read
// them as empty. pg_class read by a query shows the snapshot's version;
// pg_relation_filenode reads the catalog as it is now.
func rewritten(ctx context.Context, tx pgx.Tx, tables ...[2]string) ([]string, error) {
	if len(tables) == 0 {
		return nil, nil
	}
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = pgx.Identifier{t[0], t[1]}.Sanitize()
	}
	rows, err := tx.Query(ctx, `SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.oid = ANY($1::regclass[]) AND c.relfilenode <> pg_relation_filenode(c.oid)`, names)
	if err != nil {
		return nil, fmt.Errorf("check for table rewrites: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// refresh returns a reader for the table as it is in db's transaction (which
// holds a lock on it): cr itself unless its columns or key changed since cr
// was built (ALTER TABLE committed before the lock was granted).
func (cr *chunkReader) refresh(ctx context.Context, db querier, prefix string) (*chunkReader, error) {
	meta, cols, err := loadTableMeta(ctx, db, cr.schema, cr.table)
	if err != nil {
		return nil, err
	}
	same := meta.oid == cr.rel.ID && len(cols) == len(cr.cols) && len(meta.pk) == len(cr.pkIdx)
	for i := 0; same && i < len(cols); i++ {
		same = cols[i] == cr.cols[i]
	}
	for _, name := range meta.pk { // meta.pk is in column order, pkIdx in the index's
		same = same && slices.ContainsFunc(cr.pkIdx, func(j int) bool { return cr.cols[j].Name == name })
	}
	if same {
		return cr, nil
	}
	return newChunkReader(ctx, db, &typeCatalog{db: db}, cr.schema, cr.table, prefix)
}
