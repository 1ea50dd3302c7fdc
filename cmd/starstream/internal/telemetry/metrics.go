package telemetry

// Instrument names recorded by the Collector, exported to Prometheus as
// written. Other packages declare theirs in their own metrics.go (capture:
// starstream_capture_*; dimensions: starstream_pipeline_events_applied_total,
// starstream_dq_failures_total, starstream_sink_*); docs/operations.md lists all.
const (
	// MetricConsumerLagRecords is the committed offset's distance to the log end,
	// by group, topic and partition (as kafka-consumer-groups shows it).
	MetricConsumerLagRecords = "starstream_consumer_lag_records"
	// MetricConsumerLagSeconds is the age of the oldest unconsumed record, by
	// group, topic and partition; 0 when caught up.
	MetricConsumerLagSeconds = "starstream_consumer_lag_seconds"
	// MetricLagPollErrors counts failed lag polls (Kafka unreachable, …).
	MetricLagPollErrors = "starstream_consumer_lag_poll_errors_total"
	// MetricWatermarkLSN is each pipeline's watermark, a PostgreSQL LSN as a number.
	MetricWatermarkLSN = "starstream_pipeline_watermark_lsn"
	// MetricWatermarkAge is how long ago the source was last known to be at or
	// below the pipeline's watermark: how stale the pipeline's output may be.
	MetricWatermarkAge = "starstream_pipeline_watermark_age_seconds"
	// MetricDeadLetters counts records a pipeline sent to its dead-letter topic.
	MetricDeadLetters = "starstream_pipeline_dead_letters_total"
)

// Label names; values are names of groups, topics and pipelines, never keys or secrets.
const (
	LabelGroup     = "group"
	LabelTopic     = "topic"
	LabelPartition = "partition"
	LabelPipeline  = "pipeline"
)
