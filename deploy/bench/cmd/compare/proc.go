package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat (100 on Linux).
const clockTicks = 100

// procStat is what the benchmark reads of a process: its peak resident set (VmHWM, which the
// kernel keeps as a high-water mark) and the CPU time it used (user + system).
type procStat struct {
	HWMKiB int64
	CPU    time.Duration
}

// readProc reads /proc/<pid>/status and /proc/<pid>/stat; ok is false once the process is gone
// or a zombie (whose status has no memory lines: reading it would report a peak of 0).
func readProc(pid int) (procStat, bool) {
	var st procStat
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st, false
	}
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				st.HWMKiB, _ = strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	if st.HWMKiB == 0 {
		return st, false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return st, false
	}
	// The command name (field 2) may hold spaces: fields after it start past the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return st, false
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) > 12 {
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		st.CPU = time.Duration(u+s) * time.Second / clockTicks
	}
	return st, true
}

// sampler follows one process: the last values read while it was alive, so the peak RSS and
// the CPU time are known even after it exited (VmHWM and the CPU counters only grow).
type sampler struct {
	pid  int
	stop chan struct{}
	done chan struct{}

	mu    sync.Mutex
	first procStat
	last  procStat
	seen  bool
}

func newSampler(pid int, every time.Duration) *sampler {
	s := &sampler{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	s.sample()
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				if !s.sample() {
					return
				}
			}
		}
	}()
	return s
}

func (s *sampler) sample() bool {
	st, ok := readProc(s.pid)
	if !ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.seen {
		s.first, s.seen = st, true
	}
	s.last = st
	return true
}

// Close takes a last sample (if the process is still there) and stops sampling.
func (s *sampler) Close() {
	s.sample()
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

// Peak is the highest VmHWM seen.
func (s *sampler) Peak() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last.HWMKiB
}

// CPU is the CPU time used between the first and the last sample.
func (s *sampler) CPU() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last.CPU - s.first.CPU
}

// CPUTotal is the CPU time the process used since it started, as of the last sample.
func (s *sampler) CPUTotal() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last.CPU
}
