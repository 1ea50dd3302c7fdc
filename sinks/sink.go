// Package sinks defines the warehouse contract that every sink implements:
// tables ensured from a definition, and idempotent, position-ordered upserts.
package sinks

import (
	"context"
	"fmt"
	"strconv"
)

// Type is a warehouse column type.
type Type string

// Column types and the Go value a Row carries for each.
const (
	String    Type = "STRING"    // string
	Int64     Type = "INT64"     // int64
	Float64   Type = "FLOAT64"   // float64
	Numeric   Type = "NUMERIC"   // *big.Rat (precision 38, scale 9)
	Bool      Type = "BOOL"      // bool
	Timestamp Type = "TIMESTAMP" // time.Time
	Date      Type = "DATE"      // time.Time (UTC midnight)
	JSON      Type = "JSON"      // string holding JSON text
	Bytes     Type = "BYTES"     // []byte
)

// Column is one column of a warehouse table.
type Column struct {
	Name        string
	Type        Type
	Nullable    bool
	Description string
}

// Table is a warehouse table definition. Columns may grow over time: ensuring a
// table whose definition gained nullable columns adds them.
type Table struct {
	Name        string
	Description string
	Columns     []Column
	PrimaryKey  []string // at most 16 columns (BigQuery's limit)
	PartitionBy string   // a DATE or TIMESTAMP column, partitioned by day; empty for none
	ClusterBy   []string // at most 4 columns
}

// Validate checks the definition: names, a primary key made of known columns,
// partitioning and clustering columns that exist.
func (t Table) Validate() error {
	if t.Name == "" {
		return fmt.Errorf("%w: table without a name", ErrInvalidTable)
	}
	cols := map[string]Column{}
	for _, c := range t.Columns {
		if c.Name == "" || c.Type == "" {
			return fmt.Errorf("%w: %s: column %q needs a name and a type", ErrInvalidTable, t.Name, c.Name)
		}
		if _, dup := cols[c.Name]; dup {
			return fmt.Errorf("%w: %s: column %q twice", ErrInvalidTable, t.Name, c.Name)
		}
		cols[c.Name] = c
	}
	if len(t.PrimaryKey) == 0 || len(t.PrimaryKey) > 16 {
		return fmt.Errorf("%w: %s: primary key needs 1 to 16 columns", ErrInvalidTable, t.Name)
	}
	for _, k := range t.PrimaryKey {
		if c, ok := cols[k]; !ok || c.Nullable {
			return fmt.Errorf("%w: %s: primary key column %q must exist and be NOT NULL", ErrInvalidTable, t.Name, k)
		}
	}
	if t.PartitionBy != "" {
		if c, ok := cols[t.PartitionBy]; !ok || (c.Type != Date && c.Type != Timestamp) {
			return fmt.Errorf("%w: %s: partition column %q must be a DATE or TIMESTAMP column", ErrInvalidTable, t.Name, t.PartitionBy)
		}
	}
	if len(t.ClusterBy) > 4 {
		return fmt.Errorf("%w: %s: at most 4 clustering columns", ErrInvalidTable, t.Name)
	}
	for _, k := range t.ClusterBy {
		if _, ok := cols[k]; !ok {
			return fmt.Errorf("%w: %s: clustering column %q does not exist", ErrInvalidTable, t.Name, k)
		}
	}
	return nil
}

// Position orders the versions of a row: the source commit LSN, then the
// change's index in its transaction. An older position never overwrites a newer one.
type Position struct {
	LSN uint64
	Seq uint64
}

// Less reports whether p is strictly older than q.
func (p Position) Less(q Position) bool {
	return p.LSN < q.LSN || (p.LSN == q.LSN && p.Seq < q.Seq)
}

// ChangeSequence renders p as a BigQuery _CHANGE_SEQUENCE_NUMBER ("lsn-hex/seq-hex").
func (p Position) ChangeSequence() string {
	return strconv.FormatUint(p.LSN, 16) + "/" + strconv.FormatUint(p.Seq, 16)
}

// Op is what a Row does to its key.
type Op int

// Row operations.
const (
	Upsert Op = iota
	Delete
)

// Row is one keyed change to a table. Values holds every column for an Upsert and
// at least the primary key for a Delete.
type Row struct {
	Op     Op
	Values map[string]any
	Pos    Position
}

// RowError reports a row the sink refused (bad value, unknown column); the rest of
// the batch was written. Index is the row's index in the batch.
type RowError struct {
	Index  int
	Reason string
}

func (e RowError) Error() string { return fmt.Sprintf("row %d: %s", e.Index, e.Reason) }

// Sink is a warehouse. Implementations are safe for concurrent use by several pipelines.
type Sink interface {
	// EnsureTable creates the table if missing and adds columns the definition
	// gained; it never drops or narrows anything.
	EnsureTable(ctx context.Context, t Table) error
	// Write applies rows to a table and returns only when they are durable. It is
	// idempotent: writing the same rows again, or an older version of a row after a
	// newer one, changes nothing; a Delete leaves a tombstone so a late older Upsert
	// cannot resurrect the row. Rows it refuses come back as RowErrors while the
	// others are written; the error is for failures of the whole batch.
	Write(ctx context.Context, table string, rows []Row) ([]RowError, error)
	// Close releases the sink's resources.
	Close() error
}
