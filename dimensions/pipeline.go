package dimensions

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/starstream/starstream/dimensions/quality"
	"github.com/starstream/starstream/sinks"
	"github.com/starstream/starstream/stream"
)

// Pipeline keeps one dimension current from its source table's change stream.
type Pipeline struct {
	spec    Spec
	env     Env
	state   *State
	lookups *Lookups
	log     *slog.Logger
	proc    atomic.Pointer[stream.Processor]
	applied atomic.Int64
}

// NewPipeline returns a dimension pipeline.
func NewPipeline(spec Spec, env Env) (*Pipeline, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if err := env.Validate(); err != nil {
		return nil, err
	}
	return &Pipeline{spec: spec, env: env, state: NewState(spec), lookups: NewLookups(env, spec.Refs),
		log: env.Logger.With("pipeline", spec.Name)}, nil
}

// Name returns the pipeline's name.
func (p *Pipeline) Name() string { return p.spec.Name }

// Stats returns the pipeline's progress, zero before it started.
func (p *Pipeline) Stats() stream.Stats {
	if proc := p.proc.Load(); proc != nil {
		return proc.Stats()
	}
	return stream.Stats{}
}

func (p *Pipeline) stateSchema() stream.TableSchema {
	ts := p.spec.RecordSchema("state")
	ts.Table = p.spec.Name
	return ts
}

// Run ensures the warehouse table, then applies changes until ctx is done.
func (p *Pipeline) Run(ctx context.Context) error {
	for _, t := range []sinks.Table{p.spec.Table(), quality.QuarantineTable()} {
		if err := p.env.Sink.EnsureTable(ctx, t); err != nil {
			return fmt.Errorf("%s: ensure table %s: %w", p.spec.Name, t.Name, err)
		}
	}
	if _, err := p.env.Sink.Write(ctx, p.spec.Name, []sinks.Row{p.unknownMember()}); err != nil {
		return fmt.Errorf("%s: write unknown member: %w", p.spec.Name, err)
	}
	w, err := p.env.Writer()
	if err != nil {
		return err
	}
	defer w.Close()
	input := p.env.CDCTopic(p.spec.Source)
	if _, err := stream.NewAdmin(p.env.Brokers, p.env.Security).EnsureTopic(ctx, input, p.env.Topics); err != nil {
		return err
	}
	if _, err := w.RegisterWith(ctx, p.env.OutputTopic("dim", p.spec.Short()), p.spec.RecordSchema("dim"), p.env.KeptTopics()); err != nil {
		return err
	}
	if err := p.lookups.Ensure(ctx); err != nil {
		return err
	}
	proc, err := stream.NewProcessor(ctx, stream.ProcessorConfig{
		Name: p.spec.Name,
		Consumer: stream.ConsumerConfig{Brokers: p.env.Brokers, Security: p.env.Security, Group: p.env.Group(p.spec.Name), Topics: []string{input},
			// dim_date never changes; referenced dimensions gate this one.
			MaxBatch: p.env.MaxBatch, Gates: append([]stream.Gate{stream.Static(stream.MaxLSN)}, p.lookups.Gates()...)},
		StateTopic:   p.env.StateTopic(p.spec.Name),
		StateSchemas: []stream.TableSchema{p.stateSchema()},
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

func (p *Pipeline) unknownMember() sinks.Row {
	vals := map[string]any{p.spec.Key: UnknownKey, "valid_from": nil, "valid_to": nil, "is_current": true, "source_lsn": int64(0), "source_seq": int64(0)}
	for _, c := range p.spec.columns() {
		vals[c.Name] = nil
	}
	return sinks.Row{Op: sinks.Upsert, Values: vals}
}

// Reset clears the state before a restore.
func (p *Pipeline) Reset() { p.state.Reset() }

// Restore applies a state record.
func (p *Pipeline) Restore(ev stream.Event) error {
	p.state.Apply(changeFromRecord(ev))
	return nil
}

// Process applies a batch of source changes: warehouse rows for every touched
// version, and one topic record per applied change. Rows failing an error rule
// are quarantined and leave the dimension as it was.
func (p *Pipeline) Process(ctx context.Context, b stream.Batch) (stream.Result, error) {
	var res stream.Result
	var rows []sinks.Row
	q := quality.NewQuarantine(p.spec.Name)
	apply := func(c Change) {
		a, ok := p.state.Apply(c)
		if !ok {
			return
		}
		rows = append(rows, p.state.Rows(a)...)
		rec := p.spec.record("dim", a, c)
		res.Out = append(res.Out, rec)
		st := rec
		st.Schema, st.Table = "state", p.spec.Name
		res.State = append(res.State, st)
	}
	for _, r := range b.Records {
		ev := r.Event
		c := Change{Row: ev.After, Unchanged: ev.Unchanged, Pos: ev.Pos, CommitTime: ev.CommitTime, Snapshot: ev.Op == stream.OpSnapshot}
		switch ev.Op {
		case stream.OpSnapshot, stream.OpInsert, stream.OpUpdate:
			failures := quality.Evaluate(p.spec.Rules, ev.Table, ev.After, ev.Unchanged, ev.CommitTime)
			if len(p.spec.Refs) > 0 {
				var refFailures []quality.Failure
				c.Row, refFailures = p.resolve(ev)
				failures = append(failures, refFailures...)
			}
			for _, f := range failures {
				q.Add(r, f)
			}
			if !quality.Blocking(failures) {
				apply(c)
			}
		case stream.OpDelete:
			c.Row, c.Deleted = ev.Key, true
			apply(c)
		case stream.OpTruncate:
			for _, nk := range p.state.LiveKeys() {
				apply(Change{Row: nk, Pos: ev.Pos, CommitTime: ev.CommitTime, Deleted: true})
			}
		}
	}
	if err := p.write(ctx, rows, q); err != nil {
		return stream.Result{}, err
	}
	res.Dead, res.Quarantined = q.Dead, len(q.Rows)
	p.applied.Add(int64(len(res.Out)))
	if p.env.Metrics != nil {
		p.env.Metrics.Applied(ctx, p.spec.Name, len(b.Records))
		p.env.Metrics.DQ(ctx, p.spec.Name, q.Counts)
	}
	return res, nil
}

// resolve fills the reference columns of a source row with the referenced
// versions valid at the change's position (the unknown member when missing).
func (p *Pipeline) resolve(ev stream.Event) (map[string]any, []quality.Failure) {
	row := make(map[string]any, len(ev.After)+len(p.spec.Refs))
	for k, v := range ev.After {
		row[k] = v
	}
	var failures []quality.Failure
	for _, ref := range p.spec.Refs {
		natural := ev.After[ref.From]
		if natural == nil {
			row[ref.Column] = nil
			continue
		}
		key, _, ok := p.lookups.Key(ref, natural, ev.Pos)
		row[ref.Column] = key
		if !ok {
			failures = append(failures, quality.Failure{Rule: quality.Referential(ref.Column), Severity: quality.Warn,
				Reason: fmt.Sprintf("%s %v has no %s version at %s: unknown member", ref.From, natural, ref.Dimension.Name, ev.Pos)})
		}
	}
	return row, failures
}

// write makes the batch's dimension rows and quarantine rows durable.
func (p *Pipeline) write(ctx context.Context, rows []sinks.Row, q *quality.Quarantine) error {
	rowErrs, err := p.env.WriteRows(ctx, p.spec.Name, rows)
	if err != nil {
		return err
	}
	if len(rowErrs) > 0 {
		// A dimension row the warehouse refuses is a schema mismatch, not bad data:
		// loading the rest would leave versions inconsistent, so stop here.
		re := rowErrs[0]
		return fmt.Errorf("%s: warehouse refused row %v: %s", p.spec.Name, rows[re.Index].Values[p.spec.Key], re.Reason)
	}
	if _, err := p.env.WriteRows(ctx, quality.QuarantineTable().Name, q.Rows); err != nil {
		return err
	}
	return nil
}
