package dimensions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/starstream/starstream/sinks"
	"github.com/starstream/starstream/stream"
)

// Env is what every pipeline runs against: Kafka, the warehouse, and the names
// of the topics and groups it uses. Facts share it.
type Env struct {
	Brokers      []string
	Security     *stream.Security // Kafka SASL/TLS; nil is plaintext
	SourceSchema string           // the captured PostgreSQL schema, e.g. "shop"
	Namespace    string           // prefix of output, state and group names; "" in production
	Topics       stream.TopicConfig
	Sink         sinks.Sink
	Codecs       *stream.Codecs
	Logger       *slog.Logger
	MaxBatch     int
	Metrics      *Metrics // nil records nothing
}

// WriteRows writes rows to a warehouse table, recording latency and failures.
func (e Env) WriteRows(ctx context.Context, table string, rows []sinks.Row) ([]sinks.RowError, error) {
	if len(rows) == 0 {
		return nil, nil
	}
	start := time.Now()
	rowErrs, err := e.Sink.Write(ctx, table, rows)
	if e.Metrics != nil {
		failed := len(rowErrs)
		if err != nil {
			failed = len(rows)
		}
		e.Metrics.Sink(ctx, table, time.Since(start), failed)
	}
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", table, err)
	}
	return rowErrs, nil
}

// Validate checks the environment.
func (e Env) Validate() error {
	switch {
	case len(e.Brokers) == 0:
		return errors.New("pipeline env: no kafka brokers")
	case e.SourceSchema == "":
		return errors.New("pipeline env: no source schema")
	case e.Sink == nil || e.Codecs == nil || e.Logger == nil:
		return errors.New("pipeline env: sink, codecs and logger are required")
	}
	return nil
}

// CDCTopic is the capture topic of a source table.
func (e Env) CDCTopic(table string) string { return stream.Topic("cdc", e.SourceSchema, table) }

// OutputTopic is a pipeline's output topic: "dim.customer", "fact.sales".
func (e Env) OutputTopic(kind, short string) string { return e.Namespace + kind + "." + short }

// StateTopic holds a pipeline's state records and checkpoints.
func (e Env) StateTopic(pipeline string) string { return e.Namespace + "_starstream.state." + pipeline }

// DeadLetterTopic receives a pipeline's poison records and quarantined rows.
func (e Env) DeadLetterTopic(pipeline string) string { return e.Namespace + "dlq." + pipeline }

// Group is a pipeline's consumer group.
func (e Env) Group(pipeline string) string { return e.Namespace + "starstream." + pipeline }

// KeptTopics is the setting of output topics that followers rebuild state from:
// like every topic, but never expiring.
func (e Env) KeptTopics() stream.TopicConfig {
	t := e.Topics
	t.RetentionMs = -1
	return t
}

// Writer returns a Kafka writer for one pipeline's topics.
func (e Env) Writer() (*stream.Writer, error) {
	return stream.NewWriter(stream.WriterConfig{Brokers: e.Brokers, Security: e.Security, Topics: e.Topics}, e.Codecs, e.Logger)
}

// Follow returns a follower that rebuilds a dimension's state from its topic; it
// is also the gate of everything downstream of that dimension.
func (e Env) Follow(spec Spec) (*stream.Follower, *State) {
	st := NewState(spec)
	f := stream.NewFollower(stream.FollowerConfig{Brokers: e.Brokers, Security: e.Security, Topic: e.OutputTopic("dim", spec.Short())}, e.Codecs,
		func(r stream.Record) error {
			st.Apply(changeFromRecord(r.Event))
			return nil
		}, e.Logger.With("follow", spec.Name))
	return f, st
}
