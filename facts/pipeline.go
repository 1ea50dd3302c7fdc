package facts

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/starstream/starstream/dimensions"
	"github.com/starstream/starstream/dimensions/quality"
	"github.com/starstream/starstream/sinks"
	"github.com/starstream/starstream/stream"
)

// transform is one fact's logic: it turns input changes into fact rows, using
// point-in-time lookups, and keeps the state it needs as state records.
type transform interface {
	reset()
	restore(ev stream.Event) error
	// apply processes one input change and returns the fact rows it (re)writes
	// and the state records that capture its new state; data-quality failures
	// (rules and missing references) go to q.
	apply(r stream.Record, q *quality.Quarantine) (rows []sinks.Row, state []stream.Event)
	stateSchemas() []stream.TableSchema
}

// Pipeline keeps one fact table current. It follows the topics of the
// dimensions it looks up; their watermarks gate its input, so a change at
// position P is processed only once every dimension has applied everything up to P.
type Pipeline struct {
	spec    Spec
	env     dimensions.Env
	log     *slog.Logger
	lookups *dimensions.Lookups
	t       transform
	proc    atomic.Pointer[stream.Processor]

	mu      sync.Mutex
	unknown map[string]int64 // lookups that found no version, by key column
}

// NewPipeline returns a fact pipeline.
func NewPipeline(spec Spec, env dimensions.Env) (*Pipeline, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if err := env.Validate(); err != nil {
		return nil, err
	}
	p := &Pipeline{spec: spec, env: env, log: env.Logger.With("pipeline", spec.Name),
		lookups: dimensions.NewLookups(env, spec.Lookups), unknown: map[string]int64{}}
	switch spec.Name {
	case Sales.Name:
		p.t = newSales(p)
	case Inventory.Name:
		p.t = newInventory(p)
	case Cart.Name:
		p.t = newCart(p)
	case Marketing.Name:
		p.t = newMarketing(p)
	default:
		return nil, fmt.Errorf("fact %s: no transform", spec.Name)
	}
	return p, nil
}

// Name returns the pipeline's name.
func (p *Pipeline) Name() string { return p.spec.Name }

// Stats returns the pipeline's progress.
func (p *Pipeline) Stats() stream.Stats {
	if proc := p.proc.Load(); proc != nil {
		return proc.Stats()
	}
	return stream.Stats{}
}

// Unknown returns how many lookups found no dimension version, by key column.
func (p *Pipeline) Unknown() map[string]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int64, len(p.unknown))
	for k, v := range p.unknown {
		out[k] = v
	}
	return out
}

// lookup returns the surrogate key (and attributes) of the dimension version
// valid at pos, or the unknown member with a referential failure.
func (p *Pipeline) lookup(l Lookup, natural any, pos stream.Position) (int64, map[string]any, *quality.Failure) {
	if key, attrs, ok := p.lookups.Key(l, natural, pos); ok {
		return key, attrs, nil
	}
	p.mu.Lock()
	p.unknown[l.Column]++
	p.mu.Unlock()
	p.log.Debug("no dimension version at position: unknown member", "lookup", l.Column, "position", pos.String(),
		"dimension_watermark", p.lookups.Watermark(l.Dimension.Name).String())
	return dimensions.UnknownKey, nil, &quality.Failure{Rule: quality.Referential(l.Column), Severity: quality.Warn,
		Reason: fmt.Sprintf("%s %v has no %s version at %s: unknown member", l.From, natural, l.Dimension.Name, pos)}
}

// Run follows the upstream dimensions and applies changes until ctx is done.
func (p *Pipeline) Run(ctx context.Context) error {
	for _, t := range []sinks.Table{p.spec.Table(), quality.QuarantineTable()} {
		if err := p.env.Sink.EnsureTable(ctx, t); err != nil {
			return fmt.Errorf("%s: ensure table %s: %w", p.spec.Name, t.Name, err)
		}
	}
	admin := stream.NewAdmin(p.env.Brokers, p.env.Security)
	var inputs []string
	for _, in := range p.spec.Inputs {
		topic := p.env.CDCTopic(in)
		if _, err := admin.EnsureTopic(ctx, topic, p.env.Topics); err != nil {
			return err
		}
		inputs = append(inputs, topic)
	}
	for _, in := range p.spec.FactInputs {
		// Created as the upstream fact's Run would: kept, since it is replayed.
		topic := p.env.OutputTopic("fact", strings.TrimPrefix(in, "fact_"))
		if _, err := admin.EnsureTopic(ctx, topic, p.env.KeptTopics()); err != nil {
			return err
		}
		inputs = append(inputs, topic)
	}
	if err := p.lookups.Ensure(ctx); err != nil {
		return err
	}
	w, err := p.env.Writer()
	if err != nil {
		return err
	}
	defer w.Close()
	if _, err := w.RegisterWith(ctx, p.env.OutputTopic("fact", p.spec.Short()), p.spec.RecordSchema("fact", p.spec.Short()), p.env.KeptTopics()); err != nil {
		return err
	}
	proc, err := stream.NewProcessor(ctx, stream.ProcessorConfig{
		Name: p.spec.Name,
		Consumer: stream.ConsumerConfig{Brokers: p.env.Brokers, Security: p.env.Security, Group: p.env.Group(p.spec.Name), Topics: inputs,
			MaxBatch: p.env.MaxBatch, Gates: p.lookups.Gates()},
		StateTopic:   p.env.StateTopic(p.spec.Name),
		StateSchemas: p.t.stateSchemas(),
		DeadLetter:   p.env.DeadLetterTopic(p.spec.Name),
	}, p.env.Codecs, w, p, p.env.Logger)
	if err != nil {
		return err
	}
	p.proc.Store(proc)
	g, ctx := errgroup.WithContext(ctx)
	p.lookups.Go(ctx, g)
	g.Go(func() error { return proc.Run(ctx) })
	return g.Wait()
}

// Reset clears the state before a restore.
func (p *Pipeline) Reset() { p.t.reset() }

// Restore applies a state record.
func (p *Pipeline) Restore(ev stream.Event) error { return p.t.restore(ev) }

// Process turns a batch of changes into fact rows, writes them with the
// batch's quarantined rows, and returns the fact records and state records.
func (p *Pipeline) Process(ctx context.Context, b stream.Batch) (stream.Result, error) {
	var res stream.Result
	var rows []sinks.Row
	q := quality.NewQuarantine(p.spec.Name)
	for _, r := range b.Records {
		rs, st := p.t.apply(r, q)
		rows = append(rows, rs...)
		res.State = append(res.State, st...)
	}
	rowErrs, err := p.env.WriteRows(ctx, p.spec.Name, rows)
	if err != nil {
		return stream.Result{}, err
	}
	refused := map[int]bool{}
	for _, re := range rowErrs {
		refused[re.Index] = true
		q.Add(stream.Record{Event: stream.Event{Table: p.spec.Name, Key: p.grainOf(rows[re.Index]), After: rows[re.Index].Values,
			Pos: stream.Position{LSN: stream.LSN(rows[re.Index].Pos.LSN), Seq: rows[re.Index].Pos.Seq}}},
			quality.Failure{Rule: "warehouse_refused", Severity: quality.Error, Reason: re.Reason})
	}
	if _, err := p.env.WriteRows(ctx, quality.QuarantineTable().Name, q.Rows); err != nil {
		return stream.Result{}, err
	}
	for i, row := range rows {
		if refused[i] {
			continue
		}
		key := p.grainOf(row)
		ev := stream.Event{Schema: "fact", Table: p.spec.Short(), Op: stream.OpUpdate, Key: key, After: row.Values,
			Pos: stream.Position{LSN: stream.LSN(row.Pos.LSN), Seq: row.Pos.Seq}}
		if row.Op == sinks.Delete {
			ev.Op, ev.After, ev.Before = stream.OpDelete, nil, key
		}
		res.Out = append(res.Out, ev)
	}
	res.Dead, res.Quarantined = q.Dead, len(q.Rows)
	if p.env.Metrics != nil {
		p.env.Metrics.Applied(ctx, p.spec.Name, len(b.Records))
		p.env.Metrics.DQ(ctx, p.spec.Name, q.Counts)
	}
	return res, nil
}

func (p *Pipeline) grainOf(row sinks.Row) map[string]any {
	key := map[string]any{}
	for _, g := range p.spec.Grain {
		key[g] = row.Values[g]
	}
	return key
}
