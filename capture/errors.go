package capture

import (
	"errors"
	"fmt"
)

var (
	// ErrSlotLost marks a slot that this capture created and that no longer
	// exists: its position is gone, so capture stops rather than re-snapshot.
	ErrSlotLost = errors.New("replication slot lost")
	// ErrSlotInvalidated marks a slot whose WAL was removed (wal_status lost).
	ErrSlotInvalidated = errors.New("replication slot invalidated")
	// ErrSlotMismatch marks an existing slot that is not a pgoutput logical slot
	// of this database.
	ErrSlotMismatch = errors.New("replication slot does not match")
	// ErrPrivilege marks something the capture role may not do and an admin
	// must do or grant first (publication, state table).
	ErrPrivilege = errors.New("insufficient privilege")
	// ErrLockTimeout marks a table that could not be locked for reading
	// within Config.LockTimeout: something (a table rewrite) holds it.
	ErrLockTimeout = errors.New("table lock not granted in time")
	// ErrUnsupported marks source data capture cannot represent.
	ErrUnsupported = errors.New("unsupported source")

	// errEarlierWriteFailed fails the writes a lane no longer attempts after
	// one failed (the session restarts and re-sends them in order).
	errEarlierWriteFailed = errors.New("write to kafka: not attempted after an earlier write failed")
)

// TerminalError wraps an error that retrying cannot fix; Run returns it at once.
type TerminalError struct{ Err error }

func (e *TerminalError) Error() string { return e.Err.Error() }
func (e *TerminalError) Unwrap() error { return e.Err }

// IsTerminal reports whether err must not be retried.
func IsTerminal(err error) bool {
	var t *TerminalError
	return errors.As(err, &t)
}

func terminal(err error) error {
	if err == nil || IsTerminal(err) {
		return err
	}
	return &TerminalError{Err: err}
}

func terminalf(format string, args ...any) error {
	return &TerminalError{Err: fmt.Errorf(format, args...)}
}
