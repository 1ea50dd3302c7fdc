package main

import (
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
)

// memoryLimitShare is the part of a container's memory limit the Go runtime
// aims to stay under: the rest is for what it does not count (the kernel's
// page cache of the process, cgo allocations such as DuckDB's, fragmentation).
const memoryLimitShare = 0.9

// applyMemoryLimit sets the Go runtime's soft memory limit to 90% of
// STARSTREAM_MEMORY_LIMIT (bytes; what a Kubernetes Downward API
// resourceFieldRef to limits.memory gives) when GOMEMLIMIT is not set, which
// takes precedence. Setting GOMEMLIMIT to the whole container limit leaves no
// room for memory the runtime does not count, and the container is killed
// before the garbage collector works harder. It returns the limit set, 0 when none.
func applyMemoryLimit(getenv func(string) string) (int64, error) {
	v := strings.TrimSpace(getenv("STARSTREAM_MEMORY_LIMIT"))
	if v == "" || getenv("GOMEMLIMIT") != "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("STARSTREAM_MEMORY_LIMIT %q is not a number of bytes", v)
	}
	limit := int64(float64(n) * memoryLimitShare)
	debug.SetMemoryLimit(limit)
	return limit, nil
}
