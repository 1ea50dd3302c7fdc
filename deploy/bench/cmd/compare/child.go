package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/starstream/starstream/capture"
	"github.com/starstream/starstream/stream"
)

// The starstream side runs in a child process (this same binary with childEnv set), so its
// peak RSS and CPU time are its own and not the harness's: capture.New + stream.NewWriter,
// exactly as `starstream capture` wires them (Avro, acks=all, 3 partitions), on a
// pre-created slot that capture adopts without a snapshot.
const childEnv = "STARSTREAM_BENCH_CHILD"

type childConfig struct {
	DSN         string   `json:"dsn"`
	Slot        string   `json:"slot"`
	Publication string   `json:"publication"`
	Table       string   `json:"table"`
	TopicPrefix string   `json:"topic_prefix"`
	Brokers     []string `json:"brokers"`
}

// runChild is the child's main: capture until SIGTERM, then drain and exit.
func runChild(spec string) error {
	var cfg childConfig
	if err := json.Unmarshal([]byte(spec), &cfg); err != nil {
		return fmt.Errorf("child config: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	codecs := stream.NewCodecs()
	w, err := stream.NewWriter(stream.WriterConfig{Brokers: cfg.Brokers, Topics: stream.TopicConfig{Partitions: 3}}, codecs, logger)
	if err != nil {
		return err
	}
	defer w.Close()
	c, err := capture.New(capture.Config{
		DSN: cfg.DSN, Slot: cfg.Slot, Publication: cfg.Publication,
		Tables: []string{cfg.Table}, TopicPrefix: cfg.TopicPrefix, Brokers: cfg.Brokers,
	}, w, logger)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return c.Run(ctx)
}

// child is a running starstream capture process.
type child struct {
	cmd     *exec.Cmd
	started time.Time
	exited  chan struct{} // closed once the process was reaped; err is set before
	err     error
	log     *os.File
}

func startChild(cfg childConfig, logPath string) (*child, error) {
	spec, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = append(os.Environ(), childEnv+"="+string(spec))
	cmd.Stdout, cmd.Stderr = lf, lf
	c := &child{cmd: cmd, exited: make(chan struct{}), log: lf}
	c.started = time.Now()
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, err
	}
	go func() { c.err = cmd.Wait(); close(c.exited) }()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// alive reports an error if the process exited.
func (c *child) alive() error {
	select {
	case <-c.exited:
		return fmt.Errorf("starstream capture (pid %d) exited: %v; see %s", c.pid(), c.err, c.log.Name())
	default:
		return nil
	}
}

// stop sends SIGTERM (capture drains what it read into Kafka, confirms it and returns), and
// SIGKILL after 30 s.
func (c *child) stop() error {
	defer c.log.Close()
	if err := c.alive(); err != nil {
		return err
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
		return c.err
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
		return fmt.Errorf("starstream capture (pid %d) did not stop within 30s of SIGTERM; killed", c.pid())
	}
}
