package main

import (
	"os"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Unit tests of the harness's parsing and arithmetic; the benchmark itself never runs here.

func TestDebeziumRecord(t *testing.T) {
	rec := &kgo.Record{
		Key: []byte(`{"order_item_id":4}`),
		Value: []byte(`{"before":null,"after":{"order_item_id":4,"created_at":"2026-11-26T22:16:59.181655Z"},` +
			`"source":{"version":"3.6.1.Final","ts_ms":1795731419183,"ts_us":1795731419183437,"lsn":2493239376},` +
			`"op":"c","ts_ms":1795731442691,"ts_us":1795731442691086}`),
	}
	s, err := debezium(rec)
	if err != nil {
		t.Fatal(err)
	}
	// source.ts_us, not the envelope's processing time that follows it.
	if s.id != 4 || s.commit != 1795731419183437 {
		t.Fatalf("got %+v", s)
	}
	if _, err := debezium(&kgo.Record{Key: []byte(`{"x":1}`), Value: rec.Value}); err == nil {
		t.Fatal("a key without order_item_id must fail")
	}
}

func TestPercentiles(t *testing.T) {
	var v []float64
	for i := 1; i <= 100; i++ {
		v = append(v, float64(i))
	}
	if pct(v, 0.5) != 50 || pct(v, 0.99) != 99 || pct(v, 1) != 100 || pct(nil, 0.5) != 0 {
		t.Fatalf("p50 %v p99 %v max %v", pct(v, 0.5), pct(v, 0.99), pct(v, 1))
	}
}

func TestLatencyStats(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	commits := []time.Time{base.Add(time.Millisecond), base.Add(11 * time.Millisecond)}
	samples := []sample{
		{id: 5, commit: base.UnixMicro(), appended: base.Add(time.Second).UnixMicro()}, // backlog: ignored
		{id: 11, commit: base.UnixMicro(), appended: base.Add(20 * time.Millisecond).UnixMicro()},
		{id: 12, commit: base.UnixMicro(), appended: base.Add(30 * time.Millisecond).UnixMicro()},
		{id: 13, commit: base.Add(10 * time.Millisecond).UnixMicro(), appended: base.Add(50 * time.Millisecond).UnixMicro()},
	}
	lr := latencyStats("x", samples, 11, commits, 2)
	if lr.Rows != 3 || lr.P50ms != 30 || lr.MaxMs != 40 || lr.CommitReturnedMs != 1 {
		t.Fatalf("got %+v", lr)
	}
}

func TestReadProc(t *testing.T) {
	st, ok := readProc(os.Getpid())
	if !ok || st.HWMKiB <= 0 {
		t.Fatalf("readProc(self) = %+v, %v", st, ok)
	}
	if _, ok := readProc(1 << 30); ok {
		t.Fatal("a missing process must report !ok")
	}
}
