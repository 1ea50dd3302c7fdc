package stream

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// LSN is a PostgreSQL write-ahead-log position. Watermarks are LSNs.
type LSN uint64

// MaxLSN is the watermark of a source that never changes (dim_date): it gates nothing.
const MaxLSN LSN = math.MaxUint64

// String formats the LSN the way PostgreSQL does ("16/B374D848").
func (l LSN) String() string { return fmt.Sprintf("%X/%X", uint32(l>>32), uint32(l)) }

// ParseLSN reads the "16/B374D848" form, or a plain decimal number.
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse lsn %q: %w", s, ErrBadPosition)
		}
		return LSN(n), nil
	}
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse lsn %q: %w", s, ErrBadPosition)
	}
	return LSN(h<<32 | l), nil
}

// Position totally orders changes: the commit LSN of the transaction, then the
// change's index inside it. Snapshot rows carry the slot's consistent point.
type Position struct {
	LSN LSN
	Seq uint64
}

// Compare returns -1, 0 or +1 as p is before, equal to or after q.
func (p Position) Compare(q Position) int {
	switch {
	case p.LSN < q.LSN:
		return -1
	case p.LSN > q.LSN:
		return 1
	case p.Seq < q.Seq:
		return -1
	case p.Seq > q.Seq:
		return 1
	}
	return 0
}

// Less reports whether p comes strictly before q.
func (p Position) Less(q Position) bool { return p.Compare(q) < 0 }

// IsZero reports whether p is the zero position (before everything).
func (p Position) IsZero() bool { return p.LSN == 0 && p.Seq == 0 }

// String formats the position as "LSN#seq".
func (p Position) String() string { return p.LSN.String() + "#" + strconv.FormatUint(p.Seq, 10) }

// ChangeSequence renders the position as a BigQuery _CHANGE_SEQUENCE_NUMBER:
// hex sections compared section by section, so order is preserved.
func (p Position) ChangeSequence() string {
	return strconv.FormatUint(uint64(p.LSN), 16) + "/" + strconv.FormatUint(p.Seq, 16)
}
