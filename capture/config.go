package capture

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/starstream/starstream/stream"
)

// Config configures a capture process for one replication slot.
type Config struct {
	DSN         string   // source database; a normal (non-replication) connection string
	Slot        string   // logical replication slot name
	Publication string   // publication name; created if missing
	Tables      []string // "schema.table"; empty means every table of Schemas
	Schemas     []string // used when Tables is empty (FOR TABLES IN SCHEMA)
	TopicPrefix string   // default "cdc": topics are "<prefix>.<schema>.<table>"

	// Instance names this process in logs and in pg_stat_activity
	// (application_name "starstream-capture/<instance>"); default host-pid.
	Instance string

	// Brokers are the Kafka brokers the writer publishes to. When set, a
	// restarted capture reads the end of its topics and does not publish again
	// what the previous run already did (see resume.go); empty disables that.
	Brokers []string
	// KafkaSecurity authenticates and encrypts the resume reads from Brokers
	// (stream.NewSecurity); nil is plaintext.
	KafkaSecurity *stream.Security

	// StatusInterval is the longest time between two standby status updates
	// (default and maximum 10s).
	StatusInterval time.Duration
	// MarkInterval coalesces watermark markers: at most one round per interval
	// (default 200ms).
	MarkInterval time.Duration
	// ChunkEvents is the number of events per Kafka write; a large transaction is
	// written in chunks of this size (default 2000).
	ChunkEvents int
	// MaxInFlight bounds the decoded events waiting for Kafka (default 20000),
	// which bounds memory whatever the transaction size.
	MaxInFlight int
	// WriteLanes is the number of goroutines encoding and writing at once
	// (default 1); a key always uses the same lane, so its changes stay in
	// order. A lane does not wait for Kafka between batches when the writer
	// can enqueue (stream.Writer), so one lane already overlaps encoding with
	// acknowledgements; two measured no faster on a 2-core machine, with more
	// memory (see bench_test.go).
	WriteLanes int
	// SnapshotWorkers is the number of connections reading tables of the
	// initial snapshot at once, all in the slot's exported snapshot (default 2).
	SnapshotWorkers int
	// SnapshotChunkRows is the number of rows per snapshot and backfill chunk
	// (keyset pagination in primary-key order; default 10000). A chunk is the
	// unit of progress: its end key is recorded once Kafka acknowledged it,
	// and a snapshot interrupted by a crash resumes after the last one.
	SnapshotChunkRows int
	// LockTimeout bounds the wait for the ACCESS SHARE lock a snapshot or
	// backfill chunk takes on its tables before it reads them (default 10s):
	// a table rewrite (ALTER TABLE ... TYPE, TRUNCATE) holding the table
	// longer fails the snapshot, or the chunk, which is read again later.
	LockTimeout time.Duration
	// StateTable records the slots this capture created, so that a slot that
	// disappears is noticed instead of silently re-snapshotted
	// (default "public.starstream_capture_state"). Snapshot and backfill
	// progress is kept next to it, in "<StateTable>_progress".
	StateTable string
	// SignalTable receives the DBLog low/high watermark rows of backfill
	// chunks and the backfill requests of `starstream backfill`; capture
	// creates it if missing and adds it to the publication
	// (default "public.starstream_signal"). It is never published to Kafka.
	SignalTable string
	// RetryMin and RetryMax bound the backoff between sessions after a
	// retryable error (defaults 500ms and 30s).
	RetryMin, RetryMax time.Duration
	// Meter receives the capture metrics; nil disables them.
	Meter metric.Meter
}

const (
	defaultTopicPrefix = "cdc"
	defaultStateTable  = "public.starstream_capture_state"
	defaultSignalTable = "public.starstream_signal"
)

var identRe = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// WithDefaults returns the config with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.TopicPrefix == "" {
		c.TopicPrefix = defaultTopicPrefix
	}
	if c.Instance == "" {
		host, _ := os.Hostname()
		c.Instance = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if c.StatusInterval == 0 {
		c.StatusInterval = 10 * time.Second
	}
	if c.MarkInterval == 0 {
		c.MarkInterval = 200 * time.Millisecond
	}
	if c.ChunkEvents == 0 {
		c.ChunkEvents = 2000
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 20000
	}
	if c.WriteLanes == 0 {
		c.WriteLanes = 1
	}
	if c.SnapshotWorkers == 0 {
		c.SnapshotWorkers = 2
	}
	if c.SnapshotChunkRows == 0 {
		c.SnapshotChunkRows = 10000
	}
	if c.LockTimeout == 0 {
		c.LockTimeout = 10 * time.Second
	}
	if c.StateTable == "" {
		c.StateTable = defaultStateTable
	}
	if c.SignalTable == "" {
		c.SignalTable = defaultSignalTable
	}
	if c.RetryMin == 0 {
		c.RetryMin = 500 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = 30 * time.Second
	}
	return c
}

// inFlightMargin bounds how many records of a partition written after a
// record can have been sent to the pipeline before it: MaxInFlight events
// wait for Kafka at once, and with several write lanes a lane whose write
// stalls keeps its events waiting while the others go on, each up to that
// bound (review finding 6). Resume scans go back this far (resume.go,
// scanSnapshotKeys, scanChunkKeys).
func (c Config) inFlightMargin() int64 {
	return int64(c.MaxInFlight) * int64(max(c.WriteLanes, 1))
}

// Validate checks the configuration (after defaults); errors never contain the password.
func (c Config) Validate() error {
	var errs []error
	if c.DSN == "" {
		errs = append(errs, errors.New("dsn is empty"))
	}
	if !identRe.MatchString(c.Slot) {
		errs = append(errs, fmt.Errorf("slot %q must be a lower-case identifier (a-z, 0-9, _; at most 63)", c.Slot))
	}
	if !identRe.MatchString(c.Publication) {
		errs = append(errs, fmt.Errorf("publication %q must be a lower-case identifier (a-z, 0-9, _; at most 63)", c.Publication))
	}
	if len(c.Tables) == 0 && len(c.Schemas) == 0 {
		errs = append(errs, errors.New("neither tables nor schemas given: nothing to capture"))
	}
	for _, t := range c.Tables {
		if s, n, ok := strings.Cut(t, "."); !ok || s == "" || n == "" || strings.Contains(n, ".") {
			errs = append(errs, fmt.Errorf("table %q is not schema.table", t))
		}
	}
	for _, s := range c.Schemas {
		if s == "" || strings.Contains(s, ".") {
			errs = append(errs, fmt.Errorf("schema %q is not a schema name", s))
		}
	}
	if st := c.StateTable; st != "" {
		if s, n, ok := strings.Cut(st, "."); !ok || !identRe.MatchString(s) || !identRe.MatchString(n) {
			errs = append(errs, fmt.Errorf("state table %q is not schema.table", st))
		}
	}
	if st := c.SignalTable; st != "" {
		if s, n, ok := strings.Cut(st, "."); !ok || !identRe.MatchString(s) || !identRe.MatchString(n) {
			errs = append(errs, fmt.Errorf("signal table %q is not schema.table", st))
		}
	}
	if c.StateTable != "" && c.StateTable == c.SignalTable {
		errs = append(errs, fmt.Errorf("signal table %q is the state table", c.SignalTable))
	}
	if c.StatusInterval < 0 || c.StatusInterval > 10*time.Second {
		errs = append(errs, fmt.Errorf("status interval %s must be at most 10s (wal_sender_timeout)", c.StatusInterval))
	}
	if c.MarkInterval < 0 {
		errs = append(errs, fmt.Errorf("mark interval %s is negative", c.MarkInterval))
	}
	if c.ChunkEvents < 0 || c.MaxInFlight < 0 || c.SnapshotWorkers < 0 || c.WriteLanes < 0 || c.SnapshotChunkRows < 0 {
		errs = append(errs, errors.New("chunk sizes must not be negative"))
	}
	if c.MaxInFlight > 0 && c.ChunkEvents > c.MaxInFlight {
		errs = append(errs, fmt.Errorf("chunk events %d exceed max in flight %d", c.ChunkEvents, c.MaxInFlight))
	}
	if c.LockTimeout < 0 {
		errs = append(errs, fmt.Errorf("lock timeout %s is negative", c.LockTimeout))
	}
	if c.RetryMin < 0 || c.RetryMax < c.RetryMin {
		errs = append(errs, errors.New("retry backoff must satisfy 0 <= min <= max"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("capture config: %w", err)
	}
	return nil
}

var (
	kvPassword  = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)
	urlPassword = regexp.MustCompile(`(?i)(postgres(?:ql)?://[^:/@\s]*:)[^@\s]*@`)
)

// RedactDSN returns the connection string with its password replaced by
// "xxxxx", in URL and in key=value form, for logs and errors.
func RedactDSN(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		q := u.Query()
		if q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	s := urlPassword.ReplaceAllString(dsn, "${1}xxxxx@")
	return kvPassword.ReplaceAllString(s, "${1}xxxxx")
}

// redactErr removes the password of dsn from an error's text, should a driver
// ever echo the connection string.
func redactErr(dsn string, err error) error {
	if err == nil {
		return nil
	}
	pw := dsnPassword(dsn)
	if pw == "" || !strings.Contains(err.Error(), pw) {
		return err
	}
	return &redactedError{msg: strings.ReplaceAll(err.Error(), pw, "xxxxx"), err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

func dsnPassword(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		if p, ok := u.User.Password(); ok {
			return p
		}
		return u.Query().Get("password")
	}
	if m := kvPassword.FindStringSubmatch(dsn); m != nil {
		return strings.Trim(m[2], "'")
	}
	return ""
}
