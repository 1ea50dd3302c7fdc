package bigquery

import "errors"

var (
	// ErrConfig marks an unusable configuration (including a missing or
	// malformed credentials file).
	ErrConfig = errors.New("invalid bigquery sink configuration")
	// ErrClosed is returned by a Writer used after Close.
	ErrClosed = errors.New("bigquery writer is closed")
)
