package status

import (
	"fmt"
	"time"
)

// Snapshot is what the status page shows; the process builds one per request.
type Snapshot struct {
	Pipelines   []Node
	Capture     *Capture // nil when this process runs no capture
	GeneratedAt time.Time
}

// Node is one pipeline of the DAG.
type Node struct {
	Name     string
	Upstream []string // pipelines it waits for (gating); edges of the DAG
	// Watermark is the LSN every change at or below which is applied; 0 before the first.
	Watermark uint64
	// WatermarkAge is how stale the pipeline's output may be; negative when unknown.
	WatermarkAge time.Duration
	Lag          int64   // consumer lag in records, summed over the group's partitions
	LagSeconds   float64 // age of the oldest unconsumed record, worst partition
	Throughput   float64 // events per second over the last minute
	Processed    int64
	DeadLetter   int64
	DQFailures   int64
	LastError    string
	// Standby marks a member that another instance of its group is ahead of:
	// it has no watermark of its own and is ready nonetheless.
	Standby bool
}

// Capture is the state of the capture running in this process.
type Capture struct {
	Slot           string
	Publication    string
	DSN            string // the source, already redacted (and redacted again here)
	Events         int64  // change events written to Kafka since start
	ConfirmedLSN   uint64 // last LSN confirmed to PostgreSQL
	SlotLagBytes   int64
	SlotLagSeconds float64
	LastError      string
}

// Ready reports whether every pipeline has a watermark and no error, and
// capture (when present) has no error; otherwise it gives the reasons.
func (s Snapshot) Ready() (bool, []string) {
	var reasons []string
	for _, n := range s.Pipelines {
		switch {
		case n.LastError != "":
			reasons = append(reasons, fmt.Sprintf("pipeline %s failed: %s", n.Name, n.LastError))
		case n.Standby:
		case n.Watermark == 0:
			reasons = append(reasons, fmt.Sprintf("pipeline %s has no watermark yet", n.Name))
		}
	}
	if s.Capture != nil && s.Capture.LastError != "" {
		reasons = append(reasons, "capture failed: "+s.Capture.LastError)
	}
	return len(reasons) == 0, reasons
}

// formatLSN renders an LSN the way PostgreSQL does ("16/B374D848").
func formatLSN(l uint64) string { return fmt.Sprintf("%X/%X", uint32(l>>32), uint32(l)) }
