package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/metric"

	"github.com/starstream/starstream/capture"
	"github.com/starstream/starstream/cmd/starstream/internal/telemetry"
	"github.com/starstream/starstream/dimensions"
	"github.com/starstream/starstream/sinks"
	"github.com/starstream/starstream/sinks/bigquery"
	"github.com/starstream/starstream/sinks/duckdb"
	"github.com/starstream/starstream/stream"
)

// app holds what every command shares: the configuration, the logger and the
// Kafka security every Kafka client of the process uses.
type app struct {
	cfg    Config
	log    *slog.Logger
	codecs *stream.Codecs
	kafka  *stream.Security // nil: plaintext
}

// newApp builds the app of a validated configuration.
func newApp(cfg Config) (*app, error) {
	level := slog.LevelInfo
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	sec, err := stream.NewSecurity(cfg.kafkaSecurity())
	if err != nil {
		return nil, fmt.Errorf("invalid configuration: %w", prefixKeys("kafka.", err))
	}
	codecs := stream.NewCodecs()
	if cfg.Kafka.SchemaRegistryURL != "" {
		reg, err := stream.NewRegistry(cfg.registry(), log)
		if err != nil { // its errors hold no password
			return nil, fmt.Errorf("invalid configuration: kafka.schema_registry_url: %w", err)
		}
		codecs = stream.NewRegistryCodecs(reg)
	}
	return &app{cfg: cfg, log: log, codecs: codecs, kafka: sec}, nil
}

func (a *app) topics() stream.TopicConfig {
	return stream.TopicConfig{Partitions: a.cfg.Kafka.Partitions, ReplicationFactor: a.cfg.Kafka.ReplicationFactor}
}

// openSink opens the configured warehouse, wrapped in the retry decorator.
func (a *app) openSink(ctx context.Context) (sinks.Sink, error) {
	switch a.cfg.Warehouse.Kind {
	case "bigquery":
		return bigquery.Open(ctx, bigquery.Config{Project: a.cfg.Warehouse.BigQueryProject, Dataset: a.cfg.Warehouse.BigQueryDataset,
			Location: a.cfg.Warehouse.BigQueryLocation, CredentialsFile: a.cfg.Warehouse.BigQueryCredentialsFile}, a.log)
	default:
		w, err := duckdb.Open(a.cfg.Warehouse.DuckDBPath, a.log)
		if err != nil {
			return nil, fmt.Errorf("open warehouse %s: %w", a.cfg.Warehouse.DuckDBPath, err)
		}
		return sinks.WithRetry(a.withFaults(w), sinks.RetryPolicy{}, a.log), nil
	}
}

// env is what the pipelines run against.
func (a *app) env(sink sinks.Sink) dimensions.Env {
	return dimensions.Env{Brokers: a.cfg.Kafka.Brokers, Security: a.kafka, SourceSchema: a.cfg.Postgres.Schema, Namespace: a.cfg.Pipelines.Namespace,
		Topics: a.topics(), Sink: sink, Codecs: a.codecs, Logger: a.log, MaxBatch: a.cfg.Pipelines.MaxBatch}
}

// buildPipelines resolves names (with everything upstream unless only) and builds them.
func (a *app) buildPipelines(env dimensions.Env, names []string, only bool) ([]pipeline, error) {
	nodes, err := resolve(names, only)
	if err != nil {
		return nil, err
	}
	var out []pipeline
	for _, n := range nodes {
		p, err := n.build(env)
		if err != nil {
			return nil, fmt.Errorf("build %s: %w", n.name, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// writer returns a Kafka writer for capture.
func (a *app) writer() (*stream.Writer, error) {
	return stream.NewWriter(stream.WriterConfig{Brokers: a.cfg.Kafka.Brokers, Security: a.kafka, Topics: a.topics()}, a.codecs, a.log)
}

// capture builds the capture of the configured schema; meter may be nil.
func (a *app) capture(w capture.Writer, meter metric.Meter) (*capture.Capture, error) {
	return capture.New(capture.Config{DSN: a.cfg.Postgres.DSN, Slot: a.cfg.Postgres.Slot, Publication: a.cfg.Postgres.Publication,
		Schemas: []string{a.cfg.Postgres.Schema}, Brokers: a.cfg.Kafka.Brokers, KafkaSecurity: a.kafka, Meter: meter}, w, a.log)
}

// observed is what a long-running command shares: telemetry, and the pipeline
// environment with its metrics.
type observed struct {
	tel *telemetry.Telemetry
	env dimensions.Env
	db  *pgxpool.Pool // nil when the source is not reachable from this process
}

// observe sets up telemetry for a long-running command. The source connection
// only feeds watermark ages, so a process that cannot reach it still runs.
func (a *app) observe(ctx context.Context, sink sinks.Sink) (*observed, error) {
	tel, err := a.newTelemetry(ctx)
	if err != nil {
		return nil, err
	}
	o := &observed{tel: tel, env: a.env(sink)}
	if o.env.Metrics, err = dimensions.NewMetrics(tel.Meter("github.com/starstream/starstream/dimensions")); err != nil {
		return nil, err
	}
	if db, err := a.pool(ctx); err == nil {
		o.db = db
	} else {
		a.log.Warn("source database unreachable: watermark ages will be unknown", "error", err)
	}
	return o, nil
}

// close releases what observe opened.
func (o *observed) close() {
	if o.db != nil {
		o.db.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = o.tel.Shutdown(ctx)
}

// pool connects to the source database.
func (a *app) pool(ctx context.Context) (*pgxpool.Pool, error) {
	p, err := pgxpool.New(ctx, a.cfg.Postgres.DSN)
	if err != nil {
		return nil, fmt.Errorf("postgres %s: %s", capture.RedactDSN(a.cfg.Postgres.DSN), redact(a.cfg.Postgres.DSN, err))
	}
	if err := p.Ping(ctx); err != nil {
		p.Close()
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) { // it answered: authentication, pg_hba or TLS settings
			return nil, fmt.Errorf("postgres at %s refused the connection: %s",
				capture.RedactDSN(a.cfg.Postgres.DSN), redact(a.cfg.Postgres.DSN, err))
		}
		return nil, fmt.Errorf("postgres unreachable at %s (is it running? `make up` starts one): %s",
			capture.RedactDSN(a.cfg.Postgres.DSN), redact(a.cfg.Postgres.DSN, err))
	}
	return p, nil
}

// redact removes the DSN and its password from an error's text.
func redact(dsn string, err error) string {
	msg := err.Error()
	msg = strings.ReplaceAll(msg, dsn, capture.RedactDSN(dsn))
	if pw := dsnPassword(dsn); pw != "" {
		msg = strings.ReplaceAll(msg, pw, "xxxxx")
	}
	return msg
}

func dsnPassword(dsn string) string {
	r := capture.RedactDSN(dsn)
	if r == dsn {
		return ""
	}
	// The password is what RedactDSN replaced: find the differing span.
	i := 0
	for i < len(r) && i < len(dsn) && r[i] == dsn[i] {
		i++
	}
	j := 0
	for j < len(r)-i && j < len(dsn)-i && r[len(r)-1-j] == dsn[len(dsn)-1-j] {
		j++
	}
	return dsn[i : len(dsn)-j]
}

// reachable fails fast, naming the address, when PostgreSQL or Kafka does not
// answer at start; once running, capture retries connection losses itself.
func (a *app) reachable(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	db, err := a.pool(ctx)
	if err != nil {
		return err
	}
	db.Close()
	if _, err := stream.NewAdmin(a.cfg.Kafka.Brokers, a.kafka).Partitions(ctx, stream.DefaultSchemaTopic); err != nil && !isUnknownTopic(err) {
		return fmt.Errorf("kafka at %s (%s): %w", strings.Join(a.cfg.Kafka.Brokers, ","), a.kafka, err)
	}
	if reg := a.codecs.Registry(); reg != nil {
		if err := reg.Check(ctx); err != nil {
			return fmt.Errorf("kafka.schema_registry_url: %w", err)
		}
	}
	return nil
}

func isUnknownTopic(err error) bool {
	return errors.Is(err, kafka.UnknownTopicOrPartition)
}
