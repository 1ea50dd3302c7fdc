package duckdb

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"

	"github.com/starstream/starstream/sinks"
)

// Bookkeeping columns of the physical table (and of the staging table).
const (
	colLSN     = "_pos_lsn"
	colSeq     = "_pos_seq"
	colDeleted = "_deleted"

	rowsSuffix  = "__rows"
	stagePrefix = "__starstream_stage_"
)

// sqlTypes maps column types to DuckDB types; DuckDB reports them back in
// duckdb_columns() under the same names, except TIMESTAMPTZ.
var sqlTypes = map[sinks.Type]string{
	sinks.String:    "VARCHAR",
	sinks.Int64:     "BIGINT",
	sinks.Float64:   "DOUBLE",
	sinks.Numeric:   "DECIMAL(38,9)",
	sinks.Bool:      "BOOLEAN",
	sinks.Timestamp: "TIMESTAMP WITH TIME ZONE",
	sinks.Date:      "DATE",
	sinks.JSON:      "JSON",
	sinks.Bytes:     "BLOB",
}

// stageType is the staging column type: JSON is staged as text (see convert).
func stageType(t sinks.Type) string {
	if t == sinks.JSON {
		return "VARCHAR"
	}
	return sqlTypes[t]
}

// column is a user column as the writer sees it: its type, whether writes may
// leave it NULL, and whether it is part of the key.
type column struct {
	name     string
	typ      sinks.Type
	nullable bool
	key      bool
}

// table is an ensured table: its user columns in physical order and the SQL that
// writes it. Immutable once built; EnsureTable swaps in a new one.
type table struct {
	name   string
	cols   []column
	byName map[string]int
	key    []string
	keyIdx []int // key columns' indexes in cols

	stageDDL   string // CREATE OR REPLACE TEMP TABLE …
	stageRef   string // quoted staging table name
	merge      string // INSERT … SELECT … ON CONFLICT …
	stageClear string // TRUNCATE …
}

func (tb *table) stageWidth() int { return len(tb.cols) + 3 }

// quote quotes an identifier.
func quote(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }

// literal quotes a string literal.
func literal(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func rowsTable(name string) string { return name + rowsSuffix }

// checkDefinition adds the DuckDB writer's own limits to Table.Validate.
func checkDefinition(t sinks.Table) error {
	if err := t.Validate(); err != nil {
		return err
	}
	if strings.HasSuffix(t.Name, rowsSuffix) || strings.HasPrefix(t.Name, stagePrefix) {
		return fmt.Errorf("%w: %s: names ending in %q or starting with %q are the writer's own", sinks.ErrInvalidTable, t.Name, rowsSuffix, stagePrefix)
	}
	for _, c := range t.Columns {
		if _, ok := sqlTypes[c.Type]; !ok {
			return fmt.Errorf("%w: %s: column %q has unknown type %q", sinks.ErrInvalidTable, t.Name, c.Name, c.Type)
		}
		switch strings.ToLower(c.Name) {
		case colLSN, colSeq, colDeleted:
			return fmt.Errorf("%w: %s: column name %q is reserved for bookkeeping", sinks.ErrInvalidTable, t.Name, c.Name)
		}
	}
	return nil
}

// physicalColumn is a user column of an existing physical table.
type physicalColumn struct {
	name, sqlType string
}

// execer runs statements; *sql.Conn and *sql.DB both are.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// physicalColumns returns the user columns of the physical table in order, and
// its key columns; no columns means no table.
func physicalColumns(ctx context.Context, db execer, name string) ([]physicalColumn, []string, error) {
	rows, err := db.QueryContext(ctx, `SELECT column_name, data_type FROM duckdb_columns()
		WHERE database_name = current_database() AND schema_name = 'main' AND table_name = ?
		ORDER BY column_index`, rowsTable(name))
	if err != nil {
		return nil, nil, fmt.Errorf("read columns: %w", err)
	}
	defer rows.Close()
	var cols []physicalColumn
	for rows.Next() {
		var c physicalColumn
		if err := rows.Scan(&c.name, &c.sqlType); err != nil {
			return nil, nil, fmt.Errorf("read columns: %w", err)
		}
		switch c.name {
		case colLSN, colSeq, colDeleted:
		default:
			cols = append(cols, c)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("read columns: %w", err)
	}
	if len(cols) == 0 {
		return nil, nil, nil
	}
	krows, err := db.QueryContext(ctx, `SELECT unnest(constraint_column_names) FROM duckdb_constraints()
		WHERE database_name = current_database() AND schema_name = 'main' AND table_name = ? AND constraint_type = 'PRIMARY KEY'`,
		rowsTable(name))
	if err != nil {
		return nil, nil, fmt.Errorf("read primary key: %w", err)
	}
	defer krows.Close()
	var key []string
	for krows.Next() {
		var k string
		if err := krows.Scan(&k); err != nil {
			return nil, nil, fmt.Errorf("read primary key: %w", err)
		}
		key = append(key, k)
	}
	return cols, key, krows.Err()
}

// ddl returns the statements that bring the physical table and its view to
// definition t, given what exists. It refuses changes DuckDB or BigQuery could
// not apply without rewriting data: other key, other type, a new NOT NULL column.
func ddl(t sinks.Table, existing []physicalColumn, existingKey []string) ([]string, error) {
	rt := quote(rowsTable(t.Name))
	var stmts []string
	if len(existing) == 0 {
		var defs []string
		for _, c := range t.Columns {
			d := quote(c.Name) + " " + sqlTypes[c.Type]
			if slices.Contains(t.PrimaryKey, c.Name) {
				d += " NOT NULL"
			}
			defs = append(defs, d)
		}
		keys := make([]string, len(t.PrimaryKey))
		for i, k := range t.PrimaryKey {
			keys[i] = quote(k)
		}
		// Only key columns are NOT NULL here: a tombstone for a key never seen has
		// no other values. Writes check the definition's NOT NULL columns instead.
		defs = append(defs,
			colLSN+" UBIGINT NOT NULL", colSeq+" UBIGINT NOT NULL", colDeleted+" BOOLEAN NOT NULL",
			"PRIMARY KEY ("+strings.Join(keys, ", ")+")")
		stmts = append(stmts, "CREATE TABLE IF NOT EXISTS "+rt+" (\n\t"+strings.Join(defs, ",\n\t")+"\n)")
		for _, c := range t.Columns {
			existing = append(existing, physicalColumn{c.Name, sqlTypes[c.Type]})
		}
	} else {
		if !sameSet(existingKey, t.PrimaryKey) {
			return nil, fmt.Errorf("%w: %s: primary key (%s) differs from the existing table's (%s)",
				sinks.ErrInvalidTable, t.Name, strings.Join(t.PrimaryKey, ", "), strings.Join(existingKey, ", "))
		}
		for _, c := range t.Columns {
			i := slices.IndexFunc(existing, func(p physicalColumn) bool { return strings.EqualFold(p.name, c.Name) })
			switch {
			case i >= 0 && existing[i].sqlType != sqlTypes[c.Type]:
				return nil, fmt.Errorf("%w: %s: column %q is %s in the existing table, not %s",
					sinks.ErrInvalidTable, t.Name, c.Name, existing[i].sqlType, sqlTypes[c.Type])
			case i >= 0:
			case !c.Nullable:
				return nil, fmt.Errorf("%w: %s: column %q added to an existing table must be nullable",
					sinks.ErrInvalidTable, t.Name, c.Name)
			default:
				stmts = append(stmts, "ALTER TABLE "+rt+" ADD COLUMN "+quote(c.Name)+" "+sqlTypes[c.Type])
				existing = append(existing, physicalColumn{c.Name, sqlTypes[c.Type]})
			}
		}
	}

	// The view lists every user column the table has, also those a newer
	// definition added that this (older) one lacks: ensuring never hides data.
	names := make([]string, len(existing))
	for i, c := range existing {
		names[i] = quote(c.name)
	}
	view := quote(t.Name)
	stmts = append(stmts,
		"CREATE OR REPLACE VIEW "+view+" AS SELECT "+strings.Join(names, ", ")+" FROM "+rt+" WHERE NOT "+colDeleted,
		"COMMENT ON TABLE "+rt+" IS "+literal("starstream rows of "+t.Name+" with tombstones and positions; query the view "+t.Name+" instead"))
	if t.Description != "" {
		stmts = append(stmts, "COMMENT ON VIEW "+view+" IS "+literal(t.Description))
	}
	for _, c := range t.Columns {
		if c.Description != "" {
			for _, target := range []string{rt, view} {
				stmts = append(stmts, "COMMENT ON COLUMN "+target+"."+quote(c.Name)+" IS "+literal(c.Description))
			}
		}
	}
	return stmts, nil
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.ContainsFunc(b, func(y string) bool { return strings.EqualFold(x, y) }) {
			return false
		}
	}
	return true
}

// newTable builds the writer's view of table t from its physical columns:
// types and key from the table itself, NOT NULL from the definition.
func newTable(t sinks.Table, physical []physicalColumn) (*table, error) {
	typeOf := map[string]sinks.Type{}
	for k, v := range sqlTypes {
		typeOf[v] = k
	}
	tb := &table{name: t.Name, key: t.PrimaryKey, byName: map[string]int{}}
	for _, p := range physical {
		typ, ok := typeOf[p.sqlType]
		if !ok {
			return nil, fmt.Errorf("%w: %s: existing column %q has type %s that no sinks.Type maps to",
				sinks.ErrInvalidTable, t.Name, p.name, p.sqlType)
		}
		c := column{name: p.name, typ: typ, nullable: true}
		if i := slices.IndexFunc(t.Columns, func(d sinks.Column) bool { return strings.EqualFold(d.Name, p.name) }); i >= 0 {
			c.name = t.Columns[i].Name
			c.nullable = t.Columns[i].Nullable
			c.key = slices.Contains(t.PrimaryKey, c.name)
		}
		tb.byName[c.name] = len(tb.cols)
		tb.cols = append(tb.cols, c)
	}
	for _, k := range t.PrimaryKey {
		i, ok := tb.byName[k]
		if !ok {
			return nil, fmt.Errorf("%w: %s: key column %q missing from the table", sinks.ErrInvalidTable, t.Name, k)
		}
		tb.keyIdx = append(tb.keyIdx, i)
	}
	tb.buildSQL()
	return tb, nil
}

// buildSQL prepares the staging DDL and the merge: each staged version (one per
// key, see stageRows) goes in, replacing the stored version only if its position
// is newer. Equal positions change nothing, so replays are no-ops.
func (tb *table) buildSQL() {
	tb.stageRef = quote(stagePrefix + tb.name)
	var stageDefs, names, sets, keys []string
	for _, c := range tb.cols {
		q := quote(c.name)
		stageDefs = append(stageDefs, q+" "+stageType(c.typ))
		names = append(names, q)
		if !c.key {
			sets = append(sets, q+" = excluded."+q)
		}
	}
	for _, k := range tb.key {
		keys = append(keys, quote(k))
	}
	stageDefs = append(stageDefs, colLSN+" UBIGINT", colSeq+" UBIGINT", colDeleted+" BOOLEAN")
	names = append(names, colLSN, colSeq, colDeleted)
	sets = append(sets, colLSN+" = excluded."+colLSN, colSeq+" = excluded."+colSeq, colDeleted+" = excluded."+colDeleted)

	tb.stageDDL = "CREATE OR REPLACE TEMP TABLE " + tb.stageRef + " (" + strings.Join(stageDefs, ", ") + ")"
	tb.stageClear = "TRUNCATE " + tb.stageRef
	cols := strings.Join(names, ", ")
	tb.merge = "INSERT INTO " + quote(rowsTable(tb.name)) + " AS cur (" + cols + ")\n" +
		"SELECT " + cols + " FROM " + tb.stageRef + "\n" +
		"ON CONFLICT (" + strings.Join(keys, ", ") + ") DO UPDATE SET " + strings.Join(sets, ", ") + "\n" +
		"WHERE excluded." + colLSN + " > cur." + colLSN +
		" OR (excluded." + colLSN + " = cur." + colLSN + " AND excluded." + colSeq + " > cur." + colSeq + ")"
}
