package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/starstream/starstream/sinks"
)

// faultySink injects warehouse faults for chaos testing (faults.* in the
// configuration; all zero in production): transient failures, which the retry
// decorator outside it must absorb, and slow writes.
type faultySink struct {
	sinks.Sink
	failRate, slowRate float64
	slow               time.Duration
	mu                 sync.Mutex
	rng                *rand.Rand
	injected           int64
}

func (f *faultySink) roll() float64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rng.Float64()
}

// Write fails or slows down at the configured rates before writing.
func (f *faultySink) Write(ctx context.Context, table string, rows []sinks.Row) ([]sinks.RowError, error) {
	if f.roll() < f.failRate {
		f.mu.Lock()
		f.injected++
		f.mu.Unlock()
		return nil, fmt.Errorf("injected fault: warehouse unavailable: %w", sinks.ErrTransient)
	}
	if f.roll() < f.slowRate {
		select {
		case <-time.After(f.slow):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return f.Sink.Write(ctx, table, rows)
}

// withFaults wraps s when faults are configured.
func (a *app) withFaults(s sinks.Sink) sinks.Sink {
	fc := a.cfg.Faults
	if fc.SinkFailRate <= 0 && fc.SinkSlowRate <= 0 {
		return s
	}
	a.log.Warn("injecting warehouse faults (faults.* is set: chaos testing only)",
		"fail_rate", fc.SinkFailRate, "slow_rate", fc.SinkSlowRate, "slow_ms", fc.SinkSlowMs)
	return &faultySink{Sink: s, failRate: fc.SinkFailRate, slowRate: fc.SinkSlowRate, slow: time.Duration(fc.SinkSlowMs) * time.Millisecond,
		rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))}
}
