// Package bigquery is the BigQuery warehouse sink: tables created from
// definitions (primary key NOT ENFORCED, day partitioning, clustering,
// max_staleness) through the BigQuery REST API, and rows written as CDC
// upserts and deletes through the Storage Write API's default stream, ordered
// by _CHANGE_SEQUENCE_NUMBER.
package bigquery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"cloud.google.com/go/bigquery"
	"cloud.google.com/go/bigquery/storage/managedwriter"

	"github.com/starstream/starstream/sinks"
)

// Writer is the BigQuery sink. It is safe for concurrent use. Write is
// idempotent: every row is a CDC UPSERT or DELETE keyed by the table's primary
// key and ordered by its position, so BigQuery keeps the newest version of a
// key whatever the order or the number of times rows arrive.
type Writer struct {
	cfg    Config
	rest   *bigquery.Client
	write  *managedwriter.Client
	logger *slog.Logger

	mu     sync.Mutex
	tables map[string]*tableState
	closed bool
}

var _ sinks.Sink = (*Writer)(nil)

// tableState is what the Writer knows of an ensured table. schema is replaced
// as a whole when the table gains columns, so a Write uses one version throughout.
type tableState struct {
	name   string
	pk     []string
	schema *rowSchema
	stream *managedwriter.ManagedStream
	// first is the writer schema the stream was opened with; appends built with a
	// later one carry it (managedwriter.UpdateSchemaDescriptor).
	first *rowSchema
}

// Open returns the production sink: a Writer wrapped in sinks.WithRetry with
// cfg.Retry, so transient failures are retried with capped exponential backoff
// bound to the caller's context.
func Open(ctx context.Context, cfg Config, logger *slog.Logger) (sinks.Sink, error) {
	w, err := New(ctx, cfg, logger)
	if err != nil {
		return nil, err
	}
	return sinks.WithRetry(w, cfg.Retry, logger), nil
}

// New connects the REST and Storage Write clients. It does not retry: each
// failed Write returns an error wrapping sinks.ErrTransient or a terminal one
// (use Open, or sinks.WithRetry, for retries).
func New(ctx context.Context, cfg Config, logger *slog.Logger) (*Writer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	creds, err := cfg.credentials()
	if err != nil {
		return nil, err
	}
	// Both clients keep the context for background work (token refresh,
	// reconnects); they end with Close, not with the caller's context.
	bg := context.WithoutCancel(ctx)
	rest, err := bigquery.NewClient(bg, cfg.Project, append(slices.Clone(creds), cfg.RESTOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("bigquery client: %w", err)
	}
	write, err := managedwriter.NewClient(bg, cfg.Project, append(slices.Clone(creds), cfg.WriteOptions...)...)
	if err != nil {
		rest.Close()
		return nil, fmt.Errorf("storage write client: %w", err)
	}
	return &Writer{cfg: cfg, rest: rest, write: write, logger: logger, tables: map[string]*tableState{}}, nil
}

// Close closes every stream and both clients.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	tables := w.tables
	w.tables, w.closed = map[string]*tableState{}, true
	w.mu.Unlock()
	var errs []error
	for _, t := range tables {
		if err := t.stream.Close(); err != nil && !errors.Is(err, context.Canceled) && !isEOF(err) {
			errs = append(errs, fmt.Errorf("close stream %s: %w", t.name, err))
		}
	}
	if err := w.write.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close storage write client: %w", err))
	}
	if err := w.rest.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close bigquery client: %w", err))
	}
	return errors.Join(errs...)
}
