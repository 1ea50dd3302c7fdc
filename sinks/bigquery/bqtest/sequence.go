package bqtest

import (
	"fmt"
	"strconv"
	"strings"
)

// Sequence is a parsed _CHANGE_SEQUENCE_NUMBER.
//
// "_CHANGE_SEQUENCE_NUMBER ... must be a STRING of up to four sections separated
// by '/', each section a hexadecimal number of at most 16 characters (for
// example FFFFFFFFFFFFFFFF/FF). BigQuery compares the sections one by one as
// numbers; for equal values the change ingested later wins." (BigQuery docs,
// "Stream table updates with change data capture", section "Manage custom
// ordering": https://cloud.google.com/bigquery/docs/change-data-capture#manage_custom_ordering;
// also FINDINGS.md).
type Sequence []uint64

// ParseSequence parses s per the rule above.
func ParseSequence(s string) (Sequence, error) {
	if s == "" {
		return nil, fmt.Errorf("empty _CHANGE_SEQUENCE_NUMBER")
	}
	parts := strings.Split(s, "/")
	if len(parts) > 4 {
		return nil, fmt.Errorf("_CHANGE_SEQUENCE_NUMBER %q has %d sections, at most 4 allowed", s, len(parts))
	}
	out := make(Sequence, len(parts))
	for i, p := range parts {
		if p == "" || len(p) > 16 {
			return nil, fmt.Errorf("_CHANGE_SEQUENCE_NUMBER %q: section %d must be 1 to 16 hexadecimal digits", s, i+1)
		}
		v, err := strconv.ParseUint(p, 16, 64)
		if err != nil {
			return nil, fmt.Errorf("_CHANGE_SEQUENCE_NUMBER %q: section %d is not hexadecimal", s, i+1)
		}
		out[i] = v
	}
	return out, nil
}

// Compare orders two sequences section by section as numbers. A missing section
// counts as zero, so "A" equals "A/0".
func (a Sequence) Compare(b Sequence) int {
	for i := 0; i < max(len(a), len(b)); i++ {
		var x, y uint64
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
	}
	return 0
}
