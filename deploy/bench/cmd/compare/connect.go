package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// connectWorker is Kafka Connect standalone with the Debezium PostgreSQL connector, started
// and stopped by deploy/bench/debezium/connect.sh (which records the JVM's PID).
type connectWorker struct {
	script  string
	name    string
	pid     int
	started time.Time
}

func fetchConnect(ctx context.Context, script string) error {
	cmd := exec.CommandContext(ctx, script, "fetch")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s fetch: %w", script, err)
	}
	return nil
}

// startConnect returns once the connector and its task are RUNNING.
func startConnect(ctx context.Context, script, name string, env []string) (*connectWorker, error) {
	w := &connectWorker{script: script, name: name, started: time.Now()}
	cmd := exec.CommandContext(ctx, script, "start", name)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return w, fmt.Errorf("%s start %s: %w", script, name, err)
	}
	lines := strings.Fields(string(out))
	if len(lines) == 0 {
		return w, fmt.Errorf("%s start %s printed no PID", script, name)
	}
	if w.pid, err = strconv.Atoi(lines[len(lines)-1]); err != nil {
		return w, fmt.Errorf("%s start %s: PID %q: %w", script, name, lines[len(lines)-1], err)
	}
	return w, nil
}

func (w *connectWorker) alive() error {
	if w.pid == 0 {
		return fmt.Errorf("kafka connect %s not started", w.name)
	}
	if err := syscall.Kill(w.pid, 0); err != nil {
		return fmt.Errorf("kafka connect %s (pid %d) exited; see .data/bench/debezium/%s/connect.log", w.name, w.pid, w.name)
	}
	if st, ok := readProc(w.pid); !ok || st.HWMKiB == 0 {
		return fmt.Errorf("kafka connect %s (pid %d) exited; see .data/bench/debezium/%s/connect.log", w.name, w.pid, w.name)
	}
	return nil
}

// stop runs `connect.sh stop NAME`: SIGTERM to the recorded PID, SIGKILL after 60 s. It is
// safe to call when start failed half-way (the script then finds no running worker).
func (w *connectWorker) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.script, "stop", w.name)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}
