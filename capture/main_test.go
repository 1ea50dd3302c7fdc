package capture_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
	"testing"
	"time"

	"github.com/starstream/starstream/capture"
	"github.com/starstream/starstream/stream"
)

// childEnv, when set, makes the test binary run one capture process (with the
// JSON config it holds) instead of the tests: the kill -9 test's victim.
const childEnv = "STARSTREAM_CAPTURE_CHILD"

// childDelayEnv slows every Kafka write of the child by a duration, so that
// a test can kill it in the middle of a snapshot.
const childDelayEnv = "STARSTREAM_CAPTURE_CHILD_WRITE_DELAY"

// slowWriter delays each write; it hides Enqueue, so capture uses Write.
type slowWriter struct {
	w     *stream.Writer
	delay time.Duration
}

func (s slowWriter) Register(ctx context.Context, topic string, ts stream.TableSchema) (*stream.TableCodec, error) {
	return s.w.Register(ctx, topic, ts)
}

func (s slowWriter) Write(ctx context.Context, evs []stream.Event) error {
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.w.Write(ctx, evs)
}

func (s slowWriter) Mark(ctx context.Context, lsn stream.LSN) error { return s.w.Mark(ctx, lsn) }

func TestMain(m *testing.M) {
	if cfg := os.Getenv(childEnv); cfg != "" {
		os.Exit(childMain(cfg))
	}
	os.Exit(m.Run())
}

func childMain(cfgJSON string) int {
	var cfg capture.Config
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "child config:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	w, err := stream.NewWriter(stream.WriterConfig{Brokers: cfg.Brokers, Topics: stream.TopicConfig{Partitions: 3}}, stream.NewCodecs(), log)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer w.Close()
	var cw capture.Writer = w
	if d, err := time.ParseDuration(os.Getenv(childDelayEnv)); err == nil {
		cw = slowWriter{w: w, delay: d}
	}
	c, err := capture.New(cfg, cw, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if path := os.Getenv("STARSTREAM_CHILD_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if path := os.Getenv("STARSTREAM_CHILD_MEMPROFILE"); path != "" {
		go heapAtPeak(ctx, path)
	}
	if err := c.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "run:", err)
		return 1
	}
	return 0
}

// heapAtPeak writes a heap profile to path whenever the heap in use reaches a
// new high, to see what makes the peak RSS of a benchmark run.
func heapAtPeak(ctx context.Context, path string) {
	var peak uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		if ms.HeapInuse <= peak+peak/20 {
			continue
		}
		peak = ms.HeapInuse
		if f, err := os.Create(path); err == nil {
			_ = pprof.Lookup("heap").WriteTo(f, 0)
			f.Close()
		}
		if f, err := os.OpenFile(path+".log", os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err == nil {
			fmt.Fprintf(f, "heap peak: inuse %d MB, sys %d MB, gc %d\n", ms.HeapInuse>>20, ms.Sys>>20, ms.NumGC)
			f.Close()
		}
	}
}
