package dimensions

import (
	"github.com/starstream/starstream/sinks"
	"github.com/starstream/starstream/stream"
)

// Kind maps a warehouse type to the stream type carrying the same Go value.
func Kind(t sinks.Type) stream.Type {
	switch t {
	case sinks.Int64:
		return stream.Type{Kind: stream.KindInt}
	case sinks.Float64:
		return stream.Type{Kind: stream.KindFloat}
	case sinks.Numeric:
		return stream.Type{Kind: stream.KindDecimal, Precision: 38, Scale: 9}
	case sinks.Bool:
		return stream.Type{Kind: stream.KindBool}
	case sinks.Timestamp:
		return stream.Type{Kind: stream.KindTimestamp}
	case sinks.Date:
		return stream.Type{Kind: stream.KindDate}
	case sinks.JSON:
		return stream.Type{Kind: stream.KindJSON}
	case sinks.Bytes:
		return stream.Type{Kind: stream.KindBytes}
	}
	return stream.Type{Kind: stream.KindString}
}

// RecordSchema is the schema of the dimension's topic records: one record per
// applied source change, holding the member's full row after it, so that
// applying the records in order rebuilds exactly the same versions and keys.
func (s Spec) RecordSchema(namespace string) stream.TableSchema {
	ts := stream.TableSchema{Schema: namespace, Table: s.Short()}
	for _, c := range s.NaturalKey {
		ts.Columns = append(ts.Columns, stream.Column{Name: c.Name, Type: Kind(c.Type), Key: true})
	}
	for _, c := range append(append([]Col{}, s.Type2...), s.Type1...) {
		ts.Columns = append(ts.Columns, stream.Column{Name: c.Name, Type: Kind(c.Type), Nullable: true})
	}
	ts.Columns = append(ts.Columns,
		stream.Column{Name: s.Key, Type: stream.Type{Kind: stream.KindInt}, Nullable: true},
		stream.Column{Name: "valid_from_lsn", Type: stream.Type{Kind: stream.KindInt}, Nullable: true},
		stream.Column{Name: "valid_from_seq", Type: stream.Type{Kind: stream.KindInt}, Nullable: true},
		stream.Column{Name: "snapshot", Type: stream.Type{Kind: stream.KindBool}},
		stream.Column{Name: "deleted", Type: stream.Type{Kind: stream.KindBool}},
	)
	return ts
}

// record renders an applied change as a topic record.
func (s Spec) record(namespace string, a Applied, c Change) stream.Event {
	after := map[string]any{"snapshot": c.Snapshot, "deleted": a.Deleted, s.Key: nil, "valid_from_lsn": nil, "valid_from_seq": nil}
	for _, col := range s.columns() {
		after[col.Name] = a.Row[col.Name]
	}
	if n := len(a.Versions); n > 0 && !a.Deleted {
		cur := a.Versions[n-1]
		after[s.Key] = cur.Key
		after["valid_from_lsn"] = int64(cur.ValidFrom.LSN)
		after["valid_from_seq"] = int64(cur.ValidFrom.Seq)
	}
	op := stream.OpUpdate
	if a.Deleted {
		op = stream.OpDelete
	}
	return stream.Event{Schema: namespace, Table: s.Short(), Op: op, Key: a.NK, After: after, Pos: c.Pos, CommitTime: c.CommitTime}
}

// changeFromRecord turns a topic record back into the change that produced it.
func changeFromRecord(ev stream.Event) Change {
	snap, _ := ev.After["snapshot"].(bool)
	del, _ := ev.After["deleted"].(bool)
	return Change{Row: ev.After, Pos: ev.Pos, CommitTime: ev.CommitTime, Deleted: del, Snapshot: snap}
}
