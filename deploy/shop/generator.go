package shop

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// GeneratorConfig says what traffic a Generator makes.
type GeneratorConfig struct {
	// Schema to write to; DefaultSchema when empty. It must be seeded.
	Schema string
	// Rate is the target number of transactions per second; 0 runs as fast
	// as possible.
	Rate float64
	// Seed drives the random choices: a generator started on the same data
	// with the same Seed makes the same sequence of changes.
	Seed int64
}

// Validate reports whether the config can be used.
func (c GeneratorConfig) Validate() error {
	if c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) {
		return fmt.Errorf("%w: generator rate %v", ErrInvalidConfig, c.Rate)
	}
	return nil
}

// Generator makes continuous, realistic traffic on a seeded shop schema: one
// transaction per Step, drawn from a fixed mix of kinds (see Kinds). Several
// generators may run on the same schema: new rows take their ids from the
// identity columns and contended rows are locked in a fixed order.
type Generator struct {
	db     DB
	cfg    GeneratorConfig
	log    *slog.Logger
	counts [kindCount]atomic.Int64

	mu    sync.Mutex // serialises Steps: rng and state are not concurrent
	rng   *rand.Rand
	v     *vocab
	state *genState // nil until the first Step reads the id ranges
}

// NewGenerator returns a Generator writing to db. A nil logger discards logs.
func NewGenerator(db DB, cfg GeneratorConfig, logger *slog.Logger) (*Generator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Schema == "" {
		cfg.Schema = DefaultSchema
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	seed := uint64(cfg.Seed)
	return &Generator{
		db:  db,
		cfg: cfg,
		log: logger.With("schema", cfg.Schema),
		rng: rand.New(rand.NewPCG(seed, seed^0x5eed_7ea1_f1c0_ffee)),
		v:   newVocab(),
	}, nil
}

// Run performs Steps at the configured rate until ctx is done, then returns
// nil; it returns the first failed Step's error otherwise. Stopping may
// interrupt a query, and pgx closes a *pgx.Conn whose query is cancelled, so
// give Run a pool or a connection of its own.
func (g *Generator) Run(ctx context.Context) error {
	g.log.Info("generator started", "rate", g.cfg.Rate)
	var interval time.Duration
	if g.cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) / g.cfg.Rate)
	}
	next := time.Now()
	for {
		if ctx.Err() != nil {
			g.log.Info("generator stopped", "steps", g.total())
			return nil
		}
		kind, err := g.Step(ctx)
		if err != nil {
			if ctx.Err() != nil {
				continue // cancelled mid-step: stop quietly
			}
			return fmt.Errorf("generator %s: %w", kind, err)
		}
		if interval == 0 {
			continue
		}
		next = next.Add(interval)
		wait := time.Until(next)
		if wait < -time.Second {
			next = time.Now() // far behind: do not burst to catch up
			continue
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
			case <-t.C:
			}
		}
	}
}

// Step performs one transaction of a randomly drawn kind and returns it. The
// kind is counted in Stats only when the transaction committed. Steps are
// serialised: concurrent calls wait for each other.
func (g *Generator) Step(ctx context.Context) (Kind, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state == nil {
		st, err := loadState(ctx, g.db, g.cfg.Schema, g.rng)
		if err != nil {
			return 0, fmt.Errorf("generator: %w", err)
		}
		g.state = st
		g.log.Debug("generator loaded id ranges", "customers", st.customers, "products", st.products,
			"campaigns", st.campaigns, "sellers", st.sellers, "orders", st.orders)
	}
	kind := g.draw()
	kind, err := g.perform(ctx, kind)
	if err != nil {
		return kind, err
	}
	g.counts[kind].Add(1)
	g.log.Debug("generator step", "kind", kind)
	return kind, nil
}

// Stats returns how many transactions of each kind have committed. It is
// safe to call while the generator runs.
func (g *Generator) Stats() map[Kind]int64 {
	m := make(map[Kind]int64, kindCount)
	for k := range kindCount {
		m[k] = g.counts[k].Load()
	}
	return m
}

func (g *Generator) total() int64 {
	var n int64
	for k := range kindCount {
		n += g.counts[k].Load()
	}
	return n
}

// draw picks the next kind by the weights of the traffic mix.
func (g *Generator) draw() Kind {
	x := g.rng.IntN(weightTotal)
	for k := range kindCount {
		if x < k.weight() {
			return k
		}
		x -= k.weight()
	}
	return KindPageView
}
