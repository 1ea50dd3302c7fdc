package status

import (
	"sync"
	"time"
)

// Throughput turns growing counts (a pipeline's Processed) into events per
// second over a sliding window, for Node.Throughput. Safe for concurrent use.
type Throughput struct {
	window time.Duration
	mu     sync.Mutex
	series map[string][]countSample
}

type countSample struct {
	at    time.Time
	count int64
}

// NewThroughput returns a tracker averaging over window (a minute for the page).
func NewThroughput(window time.Duration) *Throughput {
	return &Throughput{window: window, series: map[string][]countSample{}}
}

// Rate records that name had counted count events at now and returns the
// rate since the oldest sample within the window (0 until two samples exist).
func (t *Throughput) Rate(name string, count int64, now time.Time) float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.series[name]
	if n := len(s); n > 0 && count < s[n-1].count {
		s = nil // the counter restarted
	}
	// One sample a second is plenty; more pages polling must not grow memory.
	if n := len(s); n == 0 || now.Sub(s[n-1].at) >= time.Second {
		s = append(s, countSample{now, count})
	}
	cut := 0
	for cut < len(s)-1 && now.Sub(s[cut].at) > t.window {
		cut++
	}
	s = s[cut:]
	t.series[name] = s
	first := s[0]
	if d := now.Sub(first.at).Seconds(); d > 0 {
		return float64(count-first.count) / d
	}
	return 0
}
