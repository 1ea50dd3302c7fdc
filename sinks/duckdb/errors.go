package duckdb

import (
	"errors"
	"fmt"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/starstream/starstream/sinks"
)

// ErrClosed marks a call on a closed Writer.
var ErrClosed = errors.New("duckdb writer closed")

// classify marks the DuckDB failures worth retrying as sinks.ErrTransient: a
// transaction conflict (another connection wrote the same rows) and running out
// of memory (other pipelines' batches may be holding it). Everything else, an IO
// error included (DuckDB invalidates the database after one), is terminal.
func classify(err error) error {
	var de *duckdb.Error
	if errors.As(err, &de) && (de.Type == duckdb.ErrorTypeTransaction || de.Type == duckdb.ErrorTypeOutOfMemory) {
		return fmt.Errorf("%w: %w", sinks.ErrTransient, err)
	}
	return err
}
