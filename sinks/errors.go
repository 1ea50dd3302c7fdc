package sinks

import "errors"

var (
	// ErrInvalidTable marks a table definition that cannot be created.
	ErrInvalidTable = errors.New("invalid table definition")
	// ErrUnknownTable marks a write to a table that was never ensured.
	ErrUnknownTable = errors.New("unknown table")
	// ErrTransient marks a failure worth retrying (unavailable, throttled, connection lost).
	ErrTransient = errors.New("transient sink failure")
)
