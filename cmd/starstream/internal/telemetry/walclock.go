package telemetry

import (
	"context"
	"sort"
	"sync"
	"time"
)

// WALClock turns a watermark (an LSN) into a time, for watermark ages. It keeps
// samples of the source's current WAL position — pg_current_wal_lsn(), taken
// every few seconds — and answers "until when is everything at or below this LSN
// complete": the time of the latest sample whose position was at or below it.
// Every change committed before that moment has an LSN at or below the
// watermark, so now minus that time bounds how stale the pipeline's output is,
// within one sampling interval. An idle source (the WAL does not move) keeps
// the age at about one interval rather than growing.
type WALClock struct {
	mu      sync.Mutex
	samples []walSample // increasing in time and LSN
	limit   int
}

type walSample struct {
	lsn uint64
	at  time.Time
}

// NewWALClock returns a clock that keeps up to 4096 samples, halving the
// resolution of its history when full (2 s samples cover two hours at full
// resolution, and more at half).
func NewWALClock() *WALClock { return &WALClock{limit: 4096} }

// Observe records that the source's WAL was at lsn at time at.
func (c *WALClock) Observe(lsn uint64, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := len(c.samples); n > 0 {
		last := c.samples[n-1]
		if at.Before(last.at) {
			return
		}
		if lsn < last.lsn {
			lsn = last.lsn // the WAL position never moves back
		}
	}
	c.samples = append(c.samples, walSample{lsn, at})
	if len(c.samples) > c.limit {
		// Keep the newest half as is and every other sample of the older half.
		half := len(c.samples) / 2
		kept := c.samples[:0:0]
		for i := 0; i < half; i += 2 {
			kept = append(kept, c.samples[i])
		}
		c.samples = append(kept, c.samples[half:]...)
	}
}

// CompleteUpTo returns the time of the latest sample at or below lsn, with
// exact true. When every sample is above lsn — the watermark is older than the
// clock's history, as after a restart while the pipeline is stuck — it returns
// the oldest sample's time with exact false: the output is complete up to some
// time before it, so the age is at least now minus that, and keeps growing as
// a stalled watermark's should. It returns the zero time before any sample.
func (c *WALClock) CompleteUpTo(lsn uint64) (t time.Time, exact bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.samples) == 0 {
		return time.Time{}, false
	}
	i := sort.Search(len(c.samples), func(i int) bool { return c.samples[i].lsn > lsn })
	if i == 0 {
		return c.samples[0].at, false
	}
	return c.samples[i-1].at, true
}

// Run samples current every interval until ctx is done; failed samples are skipped.
func (c *WALClock) Run(ctx context.Context, interval time.Duration, current func(context.Context) (uint64, error)) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if lsn, err := current(ctx); err == nil {
			c.Observe(lsn, time.Now())
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
