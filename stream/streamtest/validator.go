package streamtest

import (
	"fmt"
	"sync"

	"github.com/starstream/starstream/stream"
)

// Validator checks a stream's ordering guarantees as records are observed (after
// cockroach's cdctest validators): per key, an older version never follows a newer
// one; per partition, nothing arrives at or below a watermark already emitted there.
// Re-deliveries of the same position are allowed (at-least-once).
type Validator struct {
	mu       sync.Mutex
	latest   map[string]stream.Position // topic/key → newest position seen
	marks    map[string]stream.LSN      // topic/partition → newest marker seen
	failures []string
	records  int
}

// NewValidator returns an empty validator.
func NewValidator() *Validator {
	return &Validator{latest: map[string]stream.Position{}, marks: map[string]stream.LSN{}}
}

// Observe records a data record.
func (v *Validator) Observe(topic string, partition int, key string, pos stream.Position) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.records++
	k := topic + "/" + key
	if prev, ok := v.latest[k]; ok && pos.Less(prev) {
		v.failures = append(v.failures, fmt.Sprintf("%s key %s: position %s after newer %s", topic, key, pos, prev))
	} else {
		v.latest[k] = pos
	}
	pk := fmt.Sprintf("%s[%d]", topic, partition)
	if m, ok := v.marks[pk]; ok && pos.LSN <= m {
		v.failures = append(v.failures, fmt.Sprintf("%s key %s: position %s at or below emitted watermark %s", pk, key, pos, m))
	}
}

// Marker records a watermark marker.
func (v *Validator) Marker(topic string, partition int, lsn stream.LSN) {
	v.mu.Lock()
	defer v.mu.Unlock()
	pk := fmt.Sprintf("%s[%d]", topic, partition)
	if lsn > v.marks[pk] {
		v.marks[pk] = lsn
	}
}

// Failures returns every violation seen.
func (v *Validator) Failures() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]string(nil), v.failures...)
}

// Records returns how many data records were observed.
func (v *Validator) Records() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.records
}

// Check fails the test on any violation.
func (v *Validator) Check(t interface {
	Helper()
	Errorf(string, ...any)
}) {
	t.Helper()
	for _, f := range v.Failures() {
		t.Errorf("ordering violation: %s", f)
	}
}
