package stream

import "errors"

var (
	// ErrBadPosition marks a position or LSN that cannot be parsed.
	ErrBadPosition = errors.New("malformed position")
	// ErrUnknownSchema marks a record whose writer schema is unknown: a fingerprint
	// not in the schema topic, or an id the schema registry does not have.
	ErrUnknownSchema = errors.New("unknown schema")
	// ErrPoison marks a record that cannot be decoded; it belongs in the dead-letter topic.
	ErrPoison = errors.New("undecodable record")
	// ErrBadSchema marks a table schema that cannot be turned into Avro.
	ErrBadSchema = errors.New("invalid table schema")
	// ErrIncompatibleSchema marks a schema the registry refused under the subject's compatibility level.
	ErrIncompatibleSchema = errors.New("schema incompatible with the subject's earlier versions")
	// ErrSchemaNotFound marks a schema id the registry does not know.
	ErrSchemaNotFound = errors.New("schema not found in the registry")
	// ErrRegistryUnavailable marks a registry that could not be reached or answered 5xx/429: retryable.
	ErrRegistryUnavailable = errors.New("schema registry unavailable")
	// ErrNotAcknowledged marks records Kafka neither acknowledged nor refused
	// within the writer's AckTimeout: they may or may not have been written.
	ErrNotAcknowledged = errors.New("kafka did not acknowledge the records")
)
