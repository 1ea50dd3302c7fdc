package dimensions

import (
	"context"

	"golang.org/x/sync/errgroup"

	"github.com/starstream/starstream/stream"
)

// Ref is a reference from a pipeline's source column to a dimension: the
// column receives the surrogate key of the version valid at the change's position.
type Ref struct {
	Dimension Spec
	Column    string // receiving column, e.g. "customer_key"
	From      string // source column holding the natural key, e.g. "customer_id"
}

// Lookups follows the topics of the dimensions a pipeline references: their
// states answer point-in-time lookups and their watermarks gate the pipeline,
// so a change at P is processed only once each dimension applied everything up to P.
type Lookups struct {
	env     Env
	states  map[string]*State
	gates   map[string]*stream.Follower
	follows []*stream.Follower
}

// NewLookups prepares followers for the referenced dimensions (each once).
func NewLookups(env Env, refs []Ref) *Lookups {
	l := &Lookups{env: env, states: map[string]*State{}, gates: map[string]*stream.Follower{}}
	for _, r := range refs {
		name := r.Dimension.Name
		if _, ok := l.states[name]; ok {
			continue
		}
		f, st := env.Follow(r.Dimension)
		l.states[name], l.gates[name] = st, f
		l.follows = append(l.follows, f)
	}
	return l
}

// Gates returns the watermarks the pipeline waits for.
func (l *Lookups) Gates() []stream.Gate {
	out := make([]stream.Gate, len(l.follows))
	for i, f := range l.follows {
		out[i] = f
	}
	return out
}

// State returns a referenced dimension's state.
func (l *Lookups) State(dimension string) *State { return l.states[dimension] }

// Watermark returns how far a referenced dimension has been applied.
func (l *Lookups) Watermark(dimension string) stream.LSN {
	if f := l.gates[dimension]; f != nil {
		return f.Watermark()
	}
	return 0
}

// Key returns the surrogate key and attributes of the version of natural valid
// at pos; ok is false when there is none (the caller uses UnknownKey).
func (l *Lookups) Key(r Ref, natural any, pos stream.Position) (int64, map[string]any, bool) {
	if natural == nil {
		return UnknownKey, nil, false
	}
	v, attrs, ok := l.states[r.Dimension.Name].Lookup(NaturalKey(natural), pos)
	if !ok {
		return UnknownKey, nil, false
	}
	return v.Key, attrs, true
}

// Ensure creates the followed topics if their pipelines have not yet, so the
// followers can wait on them.
func (l *Lookups) Ensure(ctx context.Context) error {
	admin := stream.NewAdmin(l.env.Brokers, l.env.Security)
	for name := range l.states {
		spec := l.states[name].spec
		if _, err := admin.EnsureTopic(ctx, l.env.OutputTopic("dim", spec.Short()), l.env.KeptTopics()); err != nil {
			return err
		}
	}
	return nil
}

// Go runs the followers in g until its context ends.
func (l *Lookups) Go(ctx context.Context, g *errgroup.Group) {
	for _, f := range l.follows {
		g.Go(func() error { return f.Run(ctx) })
	}
}
