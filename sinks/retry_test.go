package sinks

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// fakeSink fails its first failures calls with err, then succeeds.
type fakeSink struct {
	failures int
	err      error
	rowErrs  []RowError
	calls    int
	closed   bool
}

func (f *fakeSink) next() error {
	f.calls++
	if f.calls <= f.failures {
		return f.err
	}
	return nil
}

func (f *fakeSink) EnsureTable(context.Context, Table) error { return f.next() }

func (f *fakeSink) Write(context.Context, string, []Row) ([]RowError, error) {
	if err := f.next(); err != nil {
		return nil, err
	}
	return f.rowErrs, nil
}

func (f *fakeSink) Close() error { f.closed = true; return nil }

// newTestRetry returns a retry decorator that records its waits instead of sleeping.
func newTestRetry(s Sink, p RetryPolicy) (*retrySink, *[]time.Duration) {
	r := WithRetry(s, p, nil).(*retrySink)
	var waits []time.Duration
	r.sleep = func(ctx context.Context, d time.Duration) error {
		waits = append(waits, d)
		return ctx.Err()
	}
	return r, &waits
}

func TestRetryWrite(t *testing.T) {
	t.Parallel()
	transient := fmt.Errorf("append rows: unavailable: %w", ErrTransient)
	terminal := errors.New("schema mismatch")
	tests := []struct {
		name      string
		failures  int
		err       error
		attempts  int
		wantCalls int
		wantErr   error // nil: success
	}{
		{"success at once", 0, nil, 0, 1, nil},
		{"transient then success", 3, transient, 0, 4, nil},
		{"terminal is not retried", 5, terminal, 0, 1, terminal},
		{"attempts exhausted", 10, transient, 3, 3, ErrTransient},
		{"last allowed attempt succeeds", 2, transient, 3, 3, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeSink{failures: tc.failures, err: tc.err, rowErrs: []RowError{{Index: 1, Reason: "bad"}}}
			r, waits := newTestRetry(f, RetryPolicy{Initial: time.Millisecond, Max: 4 * time.Millisecond, Attempts: tc.attempts})
			rowErrs, err := r.Write(t.Context(), "t", []Row{{}, {}})
			if f.calls != tc.wantCalls {
				t.Errorf("calls = %d, want %d", f.calls, tc.wantCalls)
			}
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Write: %v", err)
				}
				if len(rowErrs) != 1 || rowErrs[0].Index != 1 {
					t.Errorf("row errors = %v, want the inner sink's", rowErrs)
				}
			} else if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Write error = %v, want %v", err, tc.wantErr)
			}
			if want := max(tc.wantCalls-1, 0); tc.err == transient && len(*waits) != want {
				t.Errorf("waited %d times, want %d", len(*waits), want)
			}
		})
	}
}

func TestRetryEnsureTable(t *testing.T) {
	t.Parallel()
	f := &fakeSink{failures: 2, err: fmt.Errorf("create: %w", ErrTransient)}
	r, _ := newTestRetry(f, RetryPolicy{Initial: time.Millisecond})
	if err := r.EnsureTable(t.Context(), Table{Name: "t"}); err != nil {
		t.Fatalf("EnsureTable: %v", err)
	}
	if f.calls != 3 {
		t.Errorf("calls = %d, want 3", f.calls)
	}
	if err := r.Close(); err != nil || !f.closed {
		t.Errorf("Close did not reach the inner sink: %v", err)
	}
}

func TestRetryStopsWithContext(t *testing.T) {
	t.Parallel()
	f := &fakeSink{failures: 1 << 30, err: fmt.Errorf("write: %w", ErrTransient)}
	// The real sleep: the context's deadline must cut the backoff short.
	r := WithRetry(f, RetryPolicy{Initial: time.Hour}, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := r.Write(ctx, "t", nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Write error = %v, want the context's", err)
	}
	if IsTransient(err) {
		t.Errorf("an abandoned retry must not look transient: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Write returned after %v, want soon after the deadline", d)
	}
	if f.calls != 1 {
		t.Errorf("calls = %d, want 1", f.calls)
	}
}

func TestRetryDelay(t *testing.T) {
	t.Parallel()
	p := RetryPolicy{Initial: 100 * time.Millisecond, Max: time.Second}.withDefaults()
	// Equal jitter: retry n waits within [base/2, base], base = Initial·2^(n-1) capped at Max.
	for n, base := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 60: time.Second} {
		for range 50 {
			if d := p.delay(n); d < base/2 || d > base {
				t.Fatalf("delay(%d) = %v, want within [%v, %v]", n, d, base/2, base)
			}
		}
	}
	if d := (RetryPolicy{}).withDefaults(); d.Initial != 100*time.Millisecond || d.Max != 30*time.Second {
		t.Errorf("defaults = %+v", d)
	}
}

func TestIsTransient(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{ErrTransient, true},
		{fmt.Errorf("a: %w", fmt.Errorf("b: %w", ErrTransient)), true},
		{errors.Join(errors.New("x"), ErrTransient), true},
		{ErrInvalidTable, false},
		{context.Canceled, false},
	} {
		if got := IsTransient(tc.err); got != tc.want {
			t.Errorf("IsTransient(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
