package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol/metadata"
)

// DefaultSchemaTopic is the compacted topic holding every Avro schema by fingerprint.
const DefaultSchemaTopic = "_starstream_schemas"

// WriterConfig configures a Writer.
type WriterConfig struct {
	Brokers      []string
	Security     *Security     // nil: plaintext
	Topics       TopicConfig   // how new topics are created
	SchemaTopic  string        // default DefaultSchemaTopic
	BatchTimeout time.Duration // default 5ms; kafka-go's 1 s default makes single writes crawl
	// AckTimeout bounds how long a write waits for Kafka's acknowledgement
	// before failing with ErrNotAcknowledged (default 2 minutes: longer than
	// kafka-go's own retries of a batch, 10 attempts of at most 10 s each).
	AckTimeout time.Duration
}

// Validate checks the configuration.
func (c WriterConfig) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("writer config: no kafka brokers")
	}
	return c.Topics.WithDefaults().Validate()
}

// Writer publishes change events as Avro into per-table topics, keyed by primary
// key, and watermark markers into every partition of every topic it writes.
// Write returns only after Kafka acknowledged every record (acks=all);
// Enqueue hands records to Kafka without waiting, so that a caller can encode
// its next batch while Kafka acknowledges the previous one.
type Writer struct {
	cfg     WriterConfig
	admin   *Admin
	codecs  *Codecs
	kw      *kafka.Writer
	log     *slog.Logger
	bufs    sync.Pool // *encoded, reused once Kafka acknowledged their records
	scratch sync.Pool // *scratch, reused once kafka-go copied the messages

	mu         sync.Mutex
	tables     map[tableName]*TableCodec
	topics     map[tableName]string
	partitions map[string]int  // topic → partition count
	published  map[uint64]bool // schemas already in the schema topic
}

type tableName struct{ schema, table string }

// Default kafka-go batching of the Writer; the bytes limit is the topic's
// max.message.bytes. kafka-go sends one produce request per partition at a
// time, and a batch closes after BatchTimeout: at capture's rates batches
// average 600–1,400 records whatever the size limit. But kafka-go allocates
// every batch for BatchSize records (152 B each, zeroed): at 4000, 0.2–0.5 GB
// of garbage per million rows. bench-capture, 1000 against 4000 in
// alternating runs: a fifth less allocated, capture CPU per row 4–13% lower,
// the same rows/s (docs/benchmarks.md).
const (
	defaultBatchTimeout = 5 * time.Millisecond
	defaultBatchSize    = 1000
	defaultAckTimeout   = 2 * time.Minute
)

// NewWriter returns a Writer; topics are created when tables are registered.
func NewWriter(cfg WriterConfig, codecs *Codecs, logger *slog.Logger) (*Writer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.SchemaTopic == "" {
		cfg.SchemaTopic = DefaultSchemaTopic
	}
	if cfg.BatchTimeout == 0 {
		cfg.BatchTimeout = defaultBatchTimeout
	}
	if cfg.AckTimeout == 0 {
		cfg.AckTimeout = defaultAckTimeout
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	w := &Writer{
		cfg:        cfg,
		admin:      NewAdmin(cfg.Brokers, cfg.Security),
		codecs:     codecs,
		log:        logger,
		tables:     map[tableName]*TableCodec{},
		topics:     map[tableName]string{},
		partitions: map[string]int{},
		published:  map[uint64]bool{},
	}
	w.kw = &kafka.Writer{
		Addr:         kafka.TCP(cfg.Brokers...),
		Transport:    &metadataCache{RoundTripper: cfg.Security.Transport()},
		Balancer:     &balancer{},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: cfg.BatchTimeout,
		BatchSize:    defaultBatchSize,
		BatchBytes:   int64(cfg.Topics.WithDefaults().MaxMessageBytes),
		MaxAttempts:  10,
		// Every write is asynchronous inside kafka-go: WriteMessages returns
		// once the records are in their partitions' batches (so the order of
		// calls is the order in each partition), and Completion reports each
		// batch's acknowledgement to the Pending its records belong to.
		Async:      true,
		Completion: completed,
		// kafka-go retries a failing batch up to MaxAttempts times before
		// reporting it: without these its retries are silent.
		Logger:      kafkaLogger(logger, slog.LevelDebug),
		ErrorLogger: kafkaLogger(logger, slog.LevelWarn),
		// Compression stays off: the walsender, not the network, is the bottleneck.
	}
	return w, nil
}

// Register declares the current version of a table and the topic its events go to:
// it creates the topic if needed and makes the key and value schemas known before
// any record uses them. With codecs bound to a schema registry it registers them
// under the subjects <topic>-key and <topic>-value (TopicNameStrategy) and the
// records use the Confluent wire format; without, it publishes them to the schema
// topic and the records use single-object encoding. Registering a changed schema
// makes it the version used from then on; a registry that refuses it (the
// subject's compatibility level) fails with ErrIncompatibleSchema.
func (w *Writer) Register(ctx context.Context, topic string, s TableSchema) (*TableCodec, error) {
	return w.register(ctx, topic, s, w.codecs.Registry())
}

// RegisterInternal is Register for a topic only starstream reads (a pipeline's
// state topic, which holds records of several schemas): single-object encoding
// with the schemas in the schema topic, whether or not a registry is configured,
// so the registry holds only the subjects other tools read.
func (w *Writer) RegisterInternal(ctx context.Context, topic string, s TableSchema) (*TableCodec, error) {
	return w.register(ctx, topic, s, nil)
}

func (w *Writer) register(ctx context.Context, topic string, s TableSchema, reg *Registry) (*TableCodec, error) {
	tc, err := NewTableCodec(w.codecs, s)
	if err != nil {
		return nil, err
	}
	n, err := w.admin.EnsureTopic(ctx, topic, w.cfg.Topics)
	if err != nil {
		return nil, err
	}
	if reg != nil {
		if tc.KeyID, err = reg.Register(ctx, topic+"-key", tc.KeyJSON); err != nil {
			return nil, fmt.Errorf("table %s.%s: %w", s.Schema, s.Table, err)
		}
		if tc.ValueID, err = reg.Register(ctx, topic+"-value", tc.ValueJSON); err != nil {
			return nil, fmt.Errorf("table %s.%s: %w", s.Schema, s.Table, err)
		}
		w.codecs.addID(tc.KeyID, tc.KeyFP)
		w.codecs.addID(tc.ValueID, tc.ValueFP)
	} else if err := w.publishSchemas(ctx, tc.KeyFP, tc.KeyJSON, tc.ValueFP, tc.ValueJSON); err != nil {
		return nil, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	name := tableName{s.Schema, s.Table}
	w.tables[name] = tc
	w.topics[name] = topic
	w.partitions[topic] = n
	return tc, nil
}

func (w *Writer) publishSchemas(ctx context.Context, pairs ...any) error {
	var msgs []kafka.Message
	w.mu.Lock()
	for i := 0; i < len(pairs); i += 2 {
		fp, js := pairs[i].(uint64), pairs[i+1].(string)
		if !w.published[fp] {
			msgs = append(msgs, kafka.Message{Topic: w.cfg.SchemaTopic, Key: []byte(FingerprintKey(fp)), Value: []byte(js)})
		}
	}
	w.mu.Unlock()
	if len(msgs) == 0 {
		return nil
	}
	if _, err := w.admin.EnsureTopic(ctx, w.cfg.SchemaTopic, TopicConfig{Partitions: 1, CleanupPolicy: "compact",
		ReplicationFactor: w.cfg.Topics.ReplicationFactor}); err != nil {
		return err
	}
	if err := w.send(ctx, msgs); err != nil {
		return fmt.Errorf("publish schemas: %w", err)
	}
	w.mu.Lock()
	for _, m := range msgs {
		fp, _ := strconv.ParseUint(string(m.Key), 16, 64)
		w.published[fp] = true
	}
	w.mu.Unlock()
	return nil
}

// FingerprintKey is the schema topic's key for a fingerprint.
func FingerprintKey(fp uint64) string { return fmt.Sprintf("%016x", fp) }

// Write encodes the events with their table's registered schema and publishes
// them; it returns after every record was acknowledged. Records of one key keep
// their order: kafka-go writes each partition's batches one after another.
func (w *Writer) Write(ctx context.Context, events []Event) error {
	p, err := w.Enqueue(ctx, events)
	if err != nil {
		return err
	}
	if err := p.Wait(ctx); err != nil {
		return fmt.Errorf("write %d events: %w", len(events), err)
	}
	return nil
}

// Mark publishes a watermark marker into every partition of every registered topic:
// everything at or below lsn destined for those partitions has been written before it.
func (w *Writer) Mark(ctx context.Context, lsn LSN) error {
	w.mu.Lock()
	var msgs []kafka.Message
	for topic, n := range w.partitions {
		for p := 0; p < n; p++ {
			msgs = append(msgs, markerMessage(topic, p, lsn))
		}
	}
	w.mu.Unlock()
	if err := w.send(ctx, msgs); err != nil {
		return fmt.Errorf("write watermark %s: %w", lsn, err)
	}
	return nil
}

// TopicConfig returns the settings the writer creates topics with.
func (w *Writer) TopicConfig() TopicConfig { return w.cfg.Topics.WithDefaults() }

// RegisterWith is Register for a topic that, when it must be created, gets cfg
// instead of the writer's default topic settings.
func (w *Writer) RegisterWith(ctx context.Context, topic string, s TableSchema, cfg TopicConfig) (*TableCodec, error) {
	if _, err := w.admin.EnsureTopic(ctx, topic, cfg); err != nil {
		return nil, err
	}
	return w.Register(ctx, topic, s)
}

// Topics returns the topics the writer has registered.
func (w *Writer) Topics() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]string, 0, len(w.partitions))
	for t := range w.partitions {
		out = append(out, t)
	}
	return out
}

// Close flushes and closes the Kafka writer: it returns once every record
// handed to Kafka was acknowledged or failed.
func (w *Writer) Close() error { return w.kw.Close() }

// WriteRaw publishes messages as they are (dead letters), creating their topics
// with the writer's topic settings; it returns after every message was acknowledged.
func (w *Writer) WriteRaw(ctx context.Context, msgs []kafka.Message) error {
	seen := map[string]bool{}
	for _, m := range msgs {
		if seen[m.Topic] {
			continue
		}
		seen[m.Topic] = true
		if _, err := w.admin.EnsureTopic(ctx, m.Topic, w.cfg.Topics); err != nil {
			return err
		}
	}
	if err := w.send(ctx, append([]kafka.Message(nil), msgs...)); err != nil {
		return fmt.Errorf("write %d raw messages: %w", len(msgs), err)
	}
	return nil
}

// send publishes msgs (which it may modify) and waits for their acknowledgement.
func (w *Writer) send(ctx context.Context, msgs []kafka.Message) error {
	p := newPending(msgs, w.cfg.AckTimeout, nil)
	for i := range msgs {
		msgs[i].WriterData = p
	}
	if err := w.kw.WriteMessages(ctx, msgs...); err != nil {
		return describeDialError(err)
	}
	return p.Wait(ctx)
}

// kafkaLogger turns kafka-go's printf-style logging into slog records at level.
func kafkaLogger(log *slog.Logger, level slog.Level) kafka.LoggerFunc {
	return func(format string, args ...any) {
		if !log.Enabled(context.Background(), level) {
			return
		}
		log.Log(context.Background(), level, "kafka writer: "+fmt.Sprintf(format, args...))
	}
}

// metadataCache answers the metadata lookup kafka-go's Writer makes for every
// message it is given (the topic's partition count) from a copy at most
// metadataTTL old: through kafka.Transport each lookup copies and filters the
// cluster metadata, a tenth of capture's CPU. Everything else goes through.
type metadataCache struct {
	kafka.RoundTripper
	mu     sync.Mutex
	topics map[string]cachedMetadata
}

type cachedMetadata struct {
	res kafka.Response
	at  time.Time
}

// metadataTTL bounds how late a writer sees a topic's new partitions.
const metadataTTL = time.Second

func (c *metadataCache) RoundTrip(ctx context.Context, addr net.Addr, req kafka.Request) (kafka.Response, error) {
	m, ok := req.(*metadata.Request)
	if !ok || len(m.TopicNames) != 1 || m.AllowAutoTopicCreation {
		return c.RoundTripper.RoundTrip(ctx, addr, req)
	}
	topic := m.TopicNames[0]
	c.mu.Lock()
	hit, ok := c.topics[topic]
	c.mu.Unlock()
	if ok && time.Since(hit.at) < metadataTTL {
		return hit.res, nil
	}
	res, err := c.RoundTripper.RoundTrip(ctx, addr, req)
	if err != nil {
		return nil, err
	}
	if r, ok := res.(*metadata.Response); ok && len(r.Topics) == 1 && r.Topics[0].Name == topic && r.Topics[0].ErrorCode == 0 {
		c.mu.Lock()
		if c.topics == nil {
			c.topics = map[string]cachedMetadata{}
		}
		c.topics[topic] = cachedMetadata{res, time.Now()}
		c.mu.Unlock()
	}
	return res, nil
}
