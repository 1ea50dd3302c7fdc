package stream

import "sync"

// Gate is an upstream watermark a consumer waits for: it releases an input change
// at position P only when every gate's Watermark() is at least P's commit LSN.
type Gate interface {
	Watermark() LSN
	// Changed returns a channel closed the next time the watermark moves.
	Changed() <-chan struct{}
}

// Beacon is a watermark that can be advanced and watched; the zero value is not
// usable, use NewBeacon. It is safe for concurrent use.
type Beacon struct {
	mu      sync.Mutex
	lsn     LSN
	changed chan struct{}
}

// NewBeacon returns a beacon at lsn.
func NewBeacon(lsn LSN) *Beacon { return &Beacon{lsn: lsn, changed: make(chan struct{})} }

// Watermark returns the current watermark.
func (b *Beacon) Watermark() LSN {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lsn
}

// Changed returns a channel closed at the next advance.
func (b *Beacon) Changed() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.changed
}

// Advance raises the watermark to lsn; it never moves backwards.
func (b *Beacon) Advance(lsn LSN) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if lsn <= b.lsn {
		return
	}
	b.lsn = lsn
	close(b.changed)
	b.changed = make(chan struct{})
}

// Static returns a gate fixed at lsn (MaxLSN for a source that never changes).
func Static(lsn LSN) Gate { return NewBeacon(lsn) }

// MinWatermark returns the smallest watermark of the gates, MaxLSN when there are none.
func MinWatermark(gates []Gate) LSN {
	m := MaxLSN
	for _, g := range gates {
		if w := g.Watermark(); w < m {
			m = w
		}
	}
	return m
}
