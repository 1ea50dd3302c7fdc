package stream

import "errors"

var (
	// ErrBadPosition marks a position or LSN that cannot be parsed.
	ErrBadPosition = errors.New("malformed position")
	// ErrUnknownSchema marks a record whose schema fingerprint is not in the schema topic.
	ErrUnknownSchema = errors.New("unknown schema fingerprint")
	// ErrPoison marks a record that cannot be decoded; it belongs in the dead-letter topic.
	ErrPoison = errors.New("undecodable record")
	// ErrBadSchema marks a table schema that cannot be turned into Avro.
	ErrBadSchema = errors.New("invalid table schema")
)
