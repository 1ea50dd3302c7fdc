package sinks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"
)

// IsTransient reports whether err is worth retrying: it wraps ErrTransient.
// Context cancellation is not transient: the caller asked to stop.
func IsTransient(err error) bool {
	return errors.Is(err, ErrTransient)
}

// RetryPolicy is a capped exponential backoff. Zero durations take the defaults.
type RetryPolicy struct {
	Initial  time.Duration // first wait; default 100 ms
	Max      time.Duration // cap on any one wait; default 30 s
	Attempts int           // tries in all, the first included; 0 retries until the context is done
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.Initial <= 0 {
		p.Initial = 100 * time.Millisecond
	}
	if p.Max <= 0 {
		p.Max = 30 * time.Second
	}
	if p.Max < p.Initial {
		p.Max = p.Initial
	}
	return p
}

// delay returns the wait before retry n (1 for the first retry): Initial·2^(n-1)
// capped at Max, with "equal jitter" (half fixed, half random) so pipelines that
// failed together against one throttled warehouse do not retry in lockstep.
func (p RetryPolicy) delay(n int) time.Duration {
	d := p.Initial
	for i := 1; i < n && d < p.Max; i++ {
		d *= 2
	}
	d = min(d, p.Max)
	half := d / 2
	return half + rand.N(d-half+1)
}

// WithRetry decorates s so that EnsureTable and Write are retried on transient
// errors (IsTransient) under policy p, waiting between attempts without outliving
// ctx. Terminal errors and row errors come back at once. Write stays idempotent,
// so retrying a batch that was in fact applied changes nothing.
func WithRetry(s Sink, p RetryPolicy, logger *slog.Logger) Sink {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &retrySink{next: s, policy: p.withDefaults(), logger: logger, sleep: sleepCtx}
}

type retrySink struct {
	next   Sink
	policy RetryPolicy
	logger *slog.Logger
	sleep  func(ctx context.Context, d time.Duration) error // replaced in tests
}

var _ Sink = (*retrySink)(nil)

func (r *retrySink) EnsureTable(ctx context.Context, t Table) error {
	return r.do(ctx, "ensure table", t.Name, func() error { return r.next.EnsureTable(ctx, t) })
}

func (r *retrySink) Write(ctx context.Context, table string, rows []Row) ([]RowError, error) {
	var rowErrs []RowError
	err := r.do(ctx, "write", table, func() error {
		var err error
		rowErrs, err = r.next.Write(ctx, table, rows)
		return err
	})
	return rowErrs, err
}

func (r *retrySink) Close() error { return r.next.Close() }

// Unwrap returns the decorated sink, for harnesses and diagnostics.
func (r *retrySink) Unwrap() Sink { return r.next }

func (r *retrySink) do(ctx context.Context, op, table string, f func() error) error {
	for attempt := 1; ; attempt++ {
		err := f()
		if err == nil || !IsTransient(err) {
			return err
		}
		if r.policy.Attempts > 0 && attempt >= r.policy.Attempts {
			return fmt.Errorf("%s %s: gave up after %d attempts: %w", op, table, attempt, err)
		}
		d := r.policy.delay(attempt)
		r.logger.Warn("sink retry", "op", op, "table", table, "attempt", attempt, "backoff", d, "err", err)
		if serr := r.sleep(ctx, d); serr != nil {
			// The last error is kept as text only: a cancelled call must not look transient.
			return fmt.Errorf("%s %s: stopped retrying after %d attempts: %w (last error: %v)", op, table, attempt, serr, err)
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
