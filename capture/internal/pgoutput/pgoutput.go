// Package pgoutput reads the row-change messages (Insert, Update, Delete) of
// PostgreSQL's pgoutput plugin, protocol version 1, without allocating:
// pglogrepl.Parse allocates a message, a tuple, and a struct and a copy of
// the bytes per column, which made it the largest cost of decoding a change.
// Other messages are rare and still go through pglogrepl.
package pgoutput

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Column kinds in TupleData.
const (
	Null      = 'n'
	Unchanged = 'u' // an unchanged TOAST value, not sent
	Text      = 't'
	Binary    = 'b'
)

// Column is one column of a tuple. Data (Text and Binary only) aliases the
// message: it is valid until the message's buffer is reused.
type Column struct {
	Kind byte
	Data []byte
}

// Change is a parsed Insert ('I'), Update ('U') or Delete ('D') message.
type Change struct {
	Op         byte
	RelationID uint32
	// OldKind says what Old holds: 0 (nothing: an insert, or an update that
	// changed no key column under REPLICA IDENTITY DEFAULT), 'K' (the key
	// columns, others null) or 'O' (the whole old row, REPLICA IDENTITY FULL).
	OldKind byte
	Old     []Column
	New     []Column // nil for deletes

	oldBuf, newBuf []Column // kept across Parse calls
}

// IsChange reports whether a pgoutput message is an Insert, Update or Delete.
func IsChange(data []byte) bool {
	return len(data) > 0 && (data[0] == 'I' || data[0] == 'U' || data[0] == 'D')
}

var errShort = errors.New("pgoutput: message too short")

// Parse parses a change message into c, reusing c's column slices.
func Parse(data []byte, c *Change) error {
	if len(data) < 6 {
		return errShort
	}
	c.Op = data[0]
	c.RelationID = binary.BigEndian.Uint32(data[1:5])
	c.OldKind, c.Old, c.New = 0, nil, nil
	rest := data[5:]
	var err error
	switch c.Op {
	case 'I':
		if rest[0] != 'N' {
			return fmt.Errorf("pgoutput: insert: unexpected tuple marker %q", rest[0])
		}
		c.newBuf, _, err = readTuple(rest[1:], c.newBuf)
		c.New = c.newBuf
	case 'U':
		if k := rest[0]; k == 'K' || k == 'O' {
			c.OldKind = k
			if c.oldBuf, rest, err = readTuple(rest[1:], c.oldBuf); err != nil {
				return err
			}
			c.Old = c.oldBuf
			if len(rest) == 0 {
				return errShort
			}
		}
		if rest[0] != 'N' {
			return fmt.Errorf("pgoutput: update: unexpected tuple marker %q", rest[0])
		}
		c.newBuf, _, err = readTuple(rest[1:], c.newBuf)
		c.New = c.newBuf
	case 'D':
		if k := rest[0]; k != 'K' && k != 'O' {
			return fmt.Errorf("pgoutput: delete: unexpected tuple marker %q", k)
		}
		c.OldKind = rest[0]
		c.oldBuf, _, err = readTuple(rest[1:], c.oldBuf)
		c.Old = c.oldBuf
	default:
		return fmt.Errorf("pgoutput: %q is not a change message", c.Op)
	}
	return err
}

// readTuple reads TupleData: a column count, then per column its kind and,
// for values, a length and the bytes.
func readTuple(src []byte, cols []Column) ([]Column, []byte, error) {
	if len(src) < 2 {
		return cols, nil, errShort
	}
	n := int(binary.BigEndian.Uint16(src))
	src = src[2:]
	cols = cols[:0]
	for i := 0; i < n; i++ {
		if len(src) < 1 {
			return cols, nil, errShort
		}
		col := Column{Kind: src[0]}
		src = src[1:]
		switch col.Kind {
		case Text, Binary:
			if len(src) < 4 {
				return cols, nil, errShort
			}
			l := int(binary.BigEndian.Uint32(src))
			src = src[4:]
			if l < 0 || l > len(src) {
				return cols, nil, errShort
			}
			col.Data = src[:l:l]
			src = src[l:]
		case Null, Unchanged:
		default:
			return cols, nil, fmt.Errorf("pgoutput: unknown column kind %q", col.Kind)
		}
		cols = append(cols, col)
	}
	return cols, src, nil
}
