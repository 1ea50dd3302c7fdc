// Command starstream streams an e-commerce PostgreSQL database into a star
// schema (BigQuery or an embedded DuckDB) through Kafka, in near real time.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // restore default handling: a second signal exits at once
	}()
	if _, err := applyMemoryLimit(os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "starstream:", err)
		os.Exit(1)
	}
	stopProfiles := startProfiles()
	err := newRoot().ExecuteContext(ctx)
	stop()
	stopProfiles()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starstream:", err)
		os.Exit(1)
	}
}
