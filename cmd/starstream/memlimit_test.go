package main

import (
	"math"
	"runtime/debug"
	"testing"
)

// STARSTREAM_MEMORY_LIMIT (the container's limit, in bytes) gives the runtime
// 90% of it; GOMEMLIMIT, when set, wins; a malformed value is an error.
func TestApplyMemoryLimit(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1)) // restore whatever was set
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }

	got, err := applyMemoryLimit(env(map[string]string{"STARSTREAM_MEMORY_LIMIT": "2147483648"}))
	if err != nil || got != 1932735283 || debug.SetMemoryLimit(-1) != 1932735283 {
		t.Errorf("2 GiB limit: set %d, %v; runtime %d; want 90%% = 1932735283", got, err, debug.SetMemoryLimit(-1))
	}
	debug.SetMemoryLimit(math.MaxInt64)
	if got, err := applyMemoryLimit(env(map[string]string{"STARSTREAM_MEMORY_LIMIT": "2147483648", "GOMEMLIMIT": "1GiB"})); got != 0 || err != nil ||
		debug.SetMemoryLimit(-1) != math.MaxInt64 {
		t.Errorf("GOMEMLIMIT set: %d, %v; the runtime's limit changed", got, err)
	}
	if got, err := applyMemoryLimit(env(nil)); got != 0 || err != nil {
		t.Errorf("unset: %d, %v", got, err)
	}
	for _, bad := range []string{"2Gi", "-1", "0"} {
		if _, err := applyMemoryLimit(env(map[string]string{"STARSTREAM_MEMORY_LIMIT": bad})); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
