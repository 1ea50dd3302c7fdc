package stream

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// Step is a pipeline's logic, driven by a Processor.
type Step interface {
	// Reset clears the in-memory state before a restore.
	Reset()
	// Restore applies one state record that an earlier Process returned.
	Restore(ev Event) error
	// Process handles a batch: it makes the warehouse durable and returns what
	// to publish. Records with Err set are dead-lettered by the Processor and
	// never reach Process.
	Process(ctx context.Context, b Batch) (Result, error)
}

// Result is what a Step produced from a batch.
type Result struct {
	Out         []Event      // records for the output topics
	State       []Event      // state records (restored on the next assignment)
	Dead        []DeadLetter // input records refused (failed data-quality rules), with the reason
	Quarantined int          // rows that failed a data-quality rule (errors and warnings)
}

// DeadLetter is an input record sent to the dead-letter topic with its reason.
type DeadLetter struct {
	Record Record
	Rule   string
	Reason string
}

// ProcessorConfig configures a Processor.
type ProcessorConfig struct {
	Name       string // the pipeline, for logs and the checkpoint key
	Consumer   ConsumerConfig
	StateTopic string // single-partition topic holding state records and checkpoints
	DeadLetter string // topic for poison records
	// StateSchemas are the step's state records; the processor registers them on
	// the state topic, which it creates with one partition (restores rely on the
	// order of state records and checkpoints) and unlimited retention.
	StateSchemas []TableSchema
}

// checkpointSchema is the state-topic record that closes each committed batch.
var checkpointSchema = TableSchema{Schema: "starstream", Table: "checkpoint", Columns: []Column{
	{Name: "pipeline", Type: Type{Kind: KindString}, Key: true},
	{Name: "offsets", Type: Type{Kind: KindJSON}},
}}

// Processor runs a Step on a Consumer, in this order for every batch: the step
// writes the warehouse, the outputs and state records are published, a checkpoint
// naming the batch's offsets closes it, the pipeline's watermark marker goes out,
// and only then are offsets committed. On every assignment the state is rebuilt
// from the state topic up to the newest checkpoint at or before the committed
// offsets, and reading starts from that checkpoint. So a crash re-derives at most
// the last batch, and any offset reset — ours or Kafka's own tool — re-derives
// everything after it from matching state.
type Processor struct {
	cfg    ProcessorConfig
	codecs *Codecs
	w      *Writer
	step   Step
	log    *slog.Logger

	mu          sync.Mutex
	watermark   LSN
	markedAt    time.Time // when the watermark last advanced
	standby     bool
	lastError   string
	processed   int64
	deadLet     int64
	quarantined int64
}

// NewProcessor returns a processor. The writer must have the step's output
// tables registered; the processor registers the state and checkpoint tables.
func NewProcessor(ctx context.Context, cfg ProcessorConfig, codecs *Codecs, w *Writer, step Step, logger *slog.Logger) (*Processor, error) {
	if err := cfg.Consumer.Validate(); err != nil {
		return nil, err
	}
	if cfg.StateTopic == "" || cfg.DeadLetter == "" {
		return nil, fmt.Errorf("processor %s: state and dead-letter topics are required", cfg.Name)
	}
	tc := w.TopicConfig()
	tc.Partitions, tc.RetentionMs, tc.CleanupPolicy = 1, -1, "delete"
	n, err := w.admin.EnsureTopic(ctx, cfg.StateTopic, tc)
	if err != nil {
		return nil, err
	}
	if n != 1 {
		return nil, fmt.Errorf("processor %s: state topic %s has %d partitions; it needs exactly 1 (its order is the restore order)", cfg.Name, cfg.StateTopic, n)
	}
	for _, s := range append(cfg.StateSchemas, checkpointSchema) {
		if _, err := w.RegisterInternal(ctx, cfg.StateTopic, s); err != nil {
			return nil, err
		}
	}
	return &Processor{cfg: cfg, codecs: codecs, w: w, step: step, log: logger.With("pipeline", cfg.Name)}, nil
}

// Run consumes until ctx is done.
func (p *Processor) Run(ctx context.Context) error {
	c, err := NewConsumer(p.cfg.Consumer, p.codecs, p.log)
	if err != nil {
		return err
	}
	err = c.Run(ctx, p)
	if err != nil {
		p.mu.Lock()
		p.lastError = err.Error()
		p.mu.Unlock()
	}
	return err
}

// Stats is a snapshot of a processor's progress.
type Stats struct {
	Watermark   LSN
	MarkedAt    time.Time // when the watermark last advanced
	Standby     bool      // another member of the group is active; this one waits
	Processed   int64
	DeadLetter  int64
	Quarantined int64
	LastError   string
}

// Stats returns the processor's progress.
func (p *Processor) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := Stats{Watermark: p.watermark, MarkedAt: p.markedAt, Standby: p.standby, Processed: p.processed, DeadLetter: p.deadLet, Quarantined: p.quarantined, LastError: p.lastError}
	if reg := p.codecs.Registry(); st.LastError == "" && reg != nil {
		// A consumer waits out a registry it cannot use; say why it is not moving.
		if err := reg.Failing(); err != nil {
			st.LastError = err.Error()
		}
	}
	return st
}

// Standby records whether the group made another member active.
func (p *Processor) Standby(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.standby = on
}

// Assigned rebuilds the step's state up to the newest checkpoint at or before
// the committed offsets and returns that checkpoint's offsets.
func (p *Processor) Assigned(ctx context.Context, committed Offsets) (Offsets, error) {
	dec := newDecoder(p.cfg.Consumer.Brokers, p.cfg.Consumer.Security, p.cfg.Consumer.SchemaTopic, p.codecs)
	var records []Event
	cut, start, watermark := 0, Offsets{}, LSN(0)
	err := ScanToEnd(ctx, p.cfg.Consumer.Brokers, p.cfg.Consumer.Security, p.cfg.StateTopic, func(m kafka.Message) error {
		if _, ok := MarkerLSN(m); ok {
			return nil
		}
		rec := dec.decode(ctx, m)
		if rec.Err != nil {
			return fmt.Errorf("state topic %s@%d: %w", p.cfg.StateTopic, m.Offset, rec.Err)
		}
		ev := rec.Event
		if ev.Schema == checkpointSchema.Schema && ev.Table == checkpointSchema.Table {
			var ck Offsets
			text, _ := ev.After["offsets"].(string)
			if err := json.Unmarshal([]byte(text), &ck); err != nil {
				return fmt.Errorf("checkpoint %s@%d: %w", p.cfg.StateTopic, m.Offset, err)
			}
			if covered(ck, committed) {
				cut, start, watermark = len(records), ck, ev.Pos.LSN
			}
			return nil
		}
		records = append(records, ev)
		return nil
	})
	if err != nil {
		return nil, err
	}
	p.step.Reset()
	for _, ev := range records[:cut] {
		if err := p.step.Restore(ev); err != nil {
			return nil, fmt.Errorf("restore %s: %w", p.cfg.Name, err)
		}
	}
	for topic, parts := range committed {
		for id := range parts {
			if _, ok := start[topic][id]; !ok {
				if start[topic] == nil {
					start[topic] = map[int]int64{}
				}
				start[topic][id] = kafka.FirstOffset
			}
		}
	}
	p.mu.Lock()
	if watermark > p.watermark {
		// Everything up to the checkpoint's watermark was published before: the
		// pipeline is that far along until new markers say more.
		p.watermark, p.markedAt = watermark, time.Now()
	}
	p.mu.Unlock()
	p.log.Info("state restored", "records", cut, "watermark", watermark.String(), "start", fmt.Sprint(start))
	return start, nil
}

func offsetValue(o int64) int64 { return max(o, 0) }

// covered reports whether a checkpoint lies at or before the committed offsets
// on every partition of both.
func covered(ck, committed Offsets) bool {
	for topic, parts := range ck {
		for id, off := range parts {
			if offsetValue(off) > offsetValue(committed[topic][id]) {
				return false
			}
		}
	}
	for topic, parts := range committed {
		for id := range parts {
			if _, ok := ck[topic][id]; !ok {
				return false // a checkpoint that does not name a partition says nothing about it
			}
		}
	}
	return true
}

// Handle runs the step on a batch and publishes what it produced.
func (p *Processor) Handle(ctx context.Context, b Batch) error {
	good := b.Records[:0:0]
	var dead []DeadLetter
	for _, r := range b.Records {
		if r.Err != nil {
			dead = append(dead, DeadLetter{Record: r, Rule: "decode", Reason: r.Err.Error()})
			p.log.Warn("poison record dead-lettered", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "error", r.Err)
			continue
		}
		good = append(good, r)
	}
	b.Records = good
	// Poison records are dead-lettered before the batch's rows become visible in
	// the warehouse, so whoever sees the rows can already find what was refused.
	if len(dead) > 0 {
		if err := p.w.WriteRaw(ctx, p.deadMessages(dead)); err != nil {
			return err
		}
	}
	res, err := p.step.Process(ctx, b)
	if err != nil {
		return fmt.Errorf("pipeline %s: %w", p.cfg.Name, err)
	}
	if len(res.Dead) > 0 {
		if err := p.w.WriteRaw(ctx, p.deadMessages(res.Dead)); err != nil {
			return err
		}
	}
	dead = append(dead, res.Dead...)
	if err := p.w.Write(ctx, res.Out); err != nil {
		return err
	}
	state := res.State
	if b.Final {
		text, _ := json.Marshal(b.Commit)
		state = append(state, Event{Schema: checkpointSchema.Schema, Table: checkpointSchema.Table, Op: OpUpdate,
			Key:   map[string]any{"pipeline": p.cfg.Name},
			After: map[string]any{"pipeline": p.cfg.Name, "offsets": string(text)}, Pos: Position{LSN: b.Watermark}})
	}
	if err := p.w.Write(ctx, state); err != nil {
		return err
	}
	p.mu.Lock()
	advance := b.Watermark > p.watermark
	p.mu.Unlock()
	if advance {
		if err := p.w.Mark(ctx, b.Watermark); err != nil {
			return err
		}
	}
	p.mu.Lock()
	if advance {
		p.watermark = b.Watermark
		p.markedAt = time.Now()
	}
	p.processed += int64(len(good))
	p.deadLet += int64(len(dead))
	p.quarantined += int64(res.Quarantined)
	p.lastError = ""
	p.mu.Unlock()
	return nil
}

// deadMessages renders dead letters as the original records plus headers that
// say why, where from and when.
func (p *Processor) deadMessages(dead []DeadLetter) []kafka.Message {
	now := []byte(time.Now().UTC().Format(time.RFC3339Nano))
	out := make([]kafka.Message, 0, len(dead))
	for _, d := range dead {
		r := d.Record
		out = append(out, kafka.Message{Topic: p.cfg.DeadLetter, Key: r.Raw.Key, Value: r.Raw.Value,
			Headers: append(append([]kafka.Header{}, r.Raw.Headers...),
				kafka.Header{Key: "starstream.dlq.rule", Value: []byte(d.Rule)},
				kafka.Header{Key: "starstream.dlq.reason", Value: []byte(d.Reason)},
				kafka.Header{Key: "starstream.dlq.source", Value: []byte(fmt.Sprintf("%s[%d]@%d", r.Topic, r.Partition, r.Offset))},
				kafka.Header{Key: "starstream.dlq.time", Value: now})})
	}
	return out
}
