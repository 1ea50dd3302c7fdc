package capture

import (
	"testing"
	"time"

	"github.com/starstream/starstream/stream"
)

func TestTimeLag(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1000, 0)
	samples := []walSample{{t0, 100}, {t0.Add(2 * time.Second), 200}, {t0.Add(4 * time.Second), 300}}
	now := t0.Add(5 * time.Second)
	for _, tc := range []struct {
		confirmed stream.LSN
		want      float64
	}{
		{300, 0}, {350, 0}, // caught up
		{250, 3}, // WAL passed 250 between t0+2s and t0+4s: at least 3s ago
		{200, 3},
		{150, 5},
		{50, 5}, // older than the history: the oldest sample bounds it
	} {
		got, _ := timeLag(append([]walSample(nil), samples...), tc.confirmed, now)
		if got != tc.want {
			t.Errorf("confirmed %d: lag %v, want %v", tc.confirmed, got, tc.want)
		}
	}
}
