package stream

import (
	"fmt"
	"time"
)

// Op says what happened to a row.
type Op string

// The operations a change event can carry.
const (
	OpSnapshot Op = "r" // row read by the initial snapshot or a backfill
	OpInsert   Op = "c"
	OpUpdate   Op = "u"
	OpDelete   Op = "d"
	OpTruncate Op = "t" // the whole table was truncated; Key, Before and After are empty
)

// Event is one row change. Values in Key, Before and After are Go values of the
// column's Type (see Type for the mapping); a column listed in Unchanged is an
// unchanged TOAST value: it is absent from After and must not be read as NULL.
type Event struct {
	Schema     string // source schema, or the producing pipeline's namespace
	Table      string
	Op         Op
	Key        map[string]any // primary-key columns
	Before     map[string]any // nil unless the replica identity provides the old row
	After      map[string]any // nil for deletes and truncates
	Unchanged  []string       // TOAST columns whose value did not change
	Pos        Position
	CommitTime time.Time
}

// Row returns After for inserts, updates and snapshot reads, and Before (or the key) for deletes.
func (e *Event) Row() map[string]any {
	if e.Op == OpDelete {
		if e.Before != nil {
			return e.Before
		}
		return e.Key
	}
	return e.After
}

// IsUnchanged reports whether column is an unchanged TOAST value in this event.
func (e *Event) IsUnchanged(column string) bool {
	for _, c := range e.Unchanged {
		if c == column {
			return true
		}
	}
	return false
}

// Topic returns the topic of the event under the given prefix ("cdc" → "cdc.shop.orders").
func Topic(prefix, schema, table string) string {
	return fmt.Sprintf("%s.%s.%s", prefix, schema, table)
}
