package dimensions

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/big"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/starstream/starstream/sinks"
	"github.com/starstream/starstream/stream"
)

// UnknownKey is the surrogate key of the unknown member, used when a fact's
// reference has no dimension version valid at its position.
const UnknownKey int64 = -1

// SurrogateKey is the deterministic 63-bit key of a version: a hash of the
// dimension, the natural key and the position that opened the version, so
// reprocessing produces the same keys.
func SurrogateKey(dimension, naturalKey string, validFrom stream.Position) int64 {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%d/%d", dimension, naturalKey, uint64(validFrom.LSN), validFrom.Seq)
	k := int64(binary.BigEndian.Uint64(h.Sum(nil)[:8]) & (1<<63 - 1))
	if k == 0 {
		k = 1
	}
	return k
}

// NaturalKey renders natural-key values as one string.
func NaturalKey(values ...any) string {
	parts := make([]string, len(values))
	for i, v := range values {
		parts[i] = fmt.Sprint(v)
	}
	return strings.Join(parts, "\x1f")
}

// Version is one row of a dimension: the attributes valid from one position to the next.
type Version struct {
	Key           int64
	ValidFrom     stream.Position
	ValidFromTime time.Time
	ValidTo       *stream.Position // nil while current
	ValidToTime   time.Time
	Type2         map[string]any
}

type entity struct {
	nk       map[string]any
	versions []*Version
	type1    map[string]any
	row      map[string]any // last full source row: fills unchanged TOAST columns
	last     stream.Position
	deleted  bool
}

// State holds every version of every member of one dimension. It is safe for
// concurrent use: a pipeline applies changes while lookups read.
type State struct {
	spec Spec
	mu   sync.RWMutex
	ents map[string]*entity
}

// NewState returns an empty state for the dimension.
func NewState(spec Spec) *State { return &State{spec: spec, ents: map[string]*entity{}} }

// Reset forgets everything.
func (s *State) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ents = map[string]*entity{}
}

// Change is one source change to apply.
type Change struct {
	Row        map[string]any // the full source row (after), or at least the key for deletes
	Unchanged  []string       // unchanged TOAST columns, taken from the previous row
	Pos        stream.Position
	CommitTime time.Time
	Deleted    bool
	Snapshot   bool // snapshot rows are valid from the start of their snapshot
}

// Applied is the outcome of a change for one member: the versions to (re)write.
type Applied struct {
	NaturalKey string
	Versions   []*Version
	Type1      map[string]any
	NK         map[string]any
	Pos        stream.Position
	Deleted    bool
	Row        map[string]any
}

// Apply applies a change. Changes at or before the member's last applied
// position are ignored (re-deliveries), so applying is idempotent.
func (s *State) Apply(c Change) (Applied, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	nkVals := make([]any, len(s.spec.NaturalKey))
	nk := map[string]any{}
	for i, col := range s.spec.NaturalKey {
		nkVals[i] = c.Row[col.Name]
		nk[col.Name] = c.Row[col.Name]
	}
	key := NaturalKey(nkVals...)
	e := s.ents[key]
	if e != nil && !e.last.Less(c.Pos) {
		return Applied{}, false
	}
	if e == nil {
		e = &entity{nk: nk, type1: map[string]any{}, deleted: true}
		s.ents[key] = e
	}
	row := c.Row
	if len(c.Unchanged) > 0 && e.row != nil {
		row = make(map[string]any, len(c.Row))
		for k, v := range c.Row {
			row[k] = v
		}
		for _, col := range c.Unchanged {
			row[col] = e.row[col]
		}
	}
	e.last = c.Pos
	var touched []*Version
	cur := e.current()
	switch {
	case c.Deleted:
		if cur != nil {
			cur.close(c.Pos, c.CommitTime)
			touched = append(touched, cur)
		}
		e.deleted = true
	case cur == nil || s.type2Changed(cur, row):
		from := c.Pos
		if c.Snapshot {
			from = stream.Position{LSN: c.Pos.LSN}
		}
		if cur != nil {
			cur.close(from, c.CommitTime)
			touched = append(touched, cur)
		}
		v := &Version{Key: SurrogateKey(s.spec.Name, key, from), ValidFrom: from, ValidFromTime: c.CommitTime, Type2: map[string]any{}}
		for _, col := range s.spec.Type2 {
			v.Type2[col.Name] = row[col.Name]
		}
		e.versions = append(e.versions, v)
		e.deleted = false
		s.setType1(e, row)
		touched = e.versions // type 1 values may have changed on every version too
	default:
		if s.setType1(e, row) {
			touched = e.versions
		}
	}
	e.row = row
	return Applied{NaturalKey: key, Versions: touched, Type1: e.type1, NK: e.nk, Pos: c.Pos, Deleted: e.deleted, Row: row}, true
}

func (e *entity) current() *Version {
	if e.deleted || len(e.versions) == 0 {
		return nil
	}
	return e.versions[len(e.versions)-1]
}

func (v *Version) close(at stream.Position, t time.Time) {
	p := at
	v.ValidTo = &p
	v.ValidToTime = t
}

func (s *State) type2Changed(v *Version, row map[string]any) bool {
	for _, col := range s.spec.Type2 {
		if !Equal(v.Type2[col.Name], row[col.Name]) {
			return true
		}
	}
	return false
}

func (s *State) setType1(e *entity, row map[string]any) bool {
	changed := false
	for _, col := range s.spec.Type1 {
		v := row[col.Name]
		if old, ok := e.type1[col.Name]; !ok || !Equal(old, v) {
			e.type1[col.Name] = v
			changed = true
		}
	}
	return changed
}

// Lookup returns the version of a member valid at pos: the newest version opened
// at or before pos that was not closed at or before pos.
func (s *State) Lookup(naturalKey string, pos stream.Position) (Version, map[string]any, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e := s.ents[naturalKey]
	if e == nil {
		return Version{}, nil, false
	}
	i := sort.Search(len(e.versions), func(i int) bool { return pos.Less(e.versions[i].ValidFrom) })
	if i == 0 {
		return Version{}, nil, false
	}
	v := e.versions[i-1]
	if v.ValidTo != nil && !pos.Less(*v.ValidTo) {
		return Version{}, nil, false
	}
	attrs := make(map[string]any, len(v.Type2)+len(e.type1))
	for k, x := range v.Type2 {
		attrs[k] = x
	}
	for k, x := range e.type1 {
		attrs[k] = x
	}
	return *v, attrs, true
}

// Members returns how many natural keys the state holds.
func (s *State) Members() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.ents)
}

// LiveKeys returns the natural keys of members not deleted (for truncates).
func (s *State) LiveKeys() []map[string]any {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []map[string]any
	for _, e := range s.ents {
		if !e.deleted {
			out = append(out, e.nk)
		}
	}
	return out
}

// Rows turns an applied change into warehouse rows, one per touched version.
func (s *State) Rows(a Applied) []sinks.Row {
	s.mu.RLock()
	defer s.mu.RUnlock()
	rows := make([]sinks.Row, 0, len(a.Versions))
	for _, v := range a.Versions {
		vals := map[string]any{s.spec.Key: v.Key, "valid_from": v.ValidFromTime, "is_current": v.ValidTo == nil,
			"source_lsn": int64(v.ValidFrom.LSN), "source_seq": int64(v.ValidFrom.Seq), "valid_to": nil}
		if v.ValidTo != nil {
			vals["valid_to"] = v.ValidToTime
		}
		for k, x := range a.NK {
			vals[k] = x
		}
		for k, x := range v.Type2 {
			vals[k] = x
		}
		for k, x := range a.Type1 {
			vals[k] = x
		}
		rows = append(rows, sinks.Row{Op: sinks.Upsert, Values: vals, Pos: sinks.Position{LSN: uint64(a.Pos.LSN), Seq: a.Pos.Seq}})
	}
	return rows
}

// Equal compares two column values of the kinds change events carry.
func Equal(a, b any) bool {
	switch x := a.(type) {
	case nil:
		return b == nil
	case *big.Rat:
		y, ok := b.(*big.Rat)
		return ok && x.Cmp(y) == 0
	case time.Time:
		y, ok := b.(time.Time)
		return ok && x.Equal(y)
	case []byte:
		y, ok := b.([]byte)
		return ok && bytes.Equal(x, y)
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !Equal(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	return a == b
}
