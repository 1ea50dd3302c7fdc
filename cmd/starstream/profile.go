package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"time"
)

// startProfiles writes a CPU profile to $STARSTREAM_CPUPROFILE.<pid> and, at
// stop, a heap profile to $STARSTREAM_MEMPROFILE.<pid>, when those are set: the
// way to see where a running process (capture, pipelines) spends its time on a
// workload a test drives; the heap profile is the one at the largest heap seen
// (sampled each second). The pid suffix keeps the processes of one test apart.
// The returned function stops and flushes them; a SIGKILLed process leaves an
// unreadable CPU profile.
func startProfiles() (stop func()) {
	var stops []func()
	if path := os.Getenv("STARSTREAM_CPUPROFILE"); path != "" {
		f, err := os.Create(fmt.Sprintf("%s.%d", path, os.Getpid()))
		if err == nil && pprof.StartCPUProfile(f) == nil {
			stops = append(stops, func() { pprof.StopCPUProfile(); f.Close() })
		} else if err == nil {
			f.Close()
		}
	}
	if path := os.Getenv("STARSTREAM_MEMPROFILE"); path != "" {
		// The heap is sampled each second and written when it is the largest
		// yet: a profile of the peak, which a profile at exit would miss.
		done, stopped := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(stopped)
			var peak uint64
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-done:
					return
				case <-tick.C:
				}
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				if ms.HeapAlloc <= peak+peak/10 {
					continue
				}
				peak = ms.HeapAlloc
				if f, err := os.Create(fmt.Sprintf("%s.%d", path, os.Getpid())); err == nil {
					_ = pprof.Lookup("heap").WriteTo(f, 0)
					f.Close()
				}
			}
		}()
		stops = append(stops, func() { close(done); <-stopped })
	}
	return func() {
		for _, s := range stops {
			s()
		}
	}
}
