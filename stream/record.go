package stream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// Record is one consumed data record: the decoded event, or Err when the record
// could not be decoded (a poison record, to be dead-lettered with Raw).
type Record struct {
	Topic     string
	Partition int
	Offset    int64
	Key       map[string]any
	Event     Event
	Err       error
	Raw       kafka.Message
}

// decoder turns Kafka messages into records, loading unknown schemas from the
// schema topic once per fingerprint, or from the schema registry once per id,
// before declaring a record poison.
type decoder struct {
	brokers     []string
	security    *Security
	schemaTopic string
	codecs      *Codecs
	mu          sync.Mutex // one schema-topic scan at a time
}

func newDecoder(brokers []string, sec *Security, schemaTopic string, codecs *Codecs) *decoder {
	if schemaTopic == "" {
		schemaTopic = DefaultSchemaTopic
	}
	return &decoder{brokers: brokers, security: sec, schemaTopic: schemaTopic, codecs: codecs}
}

func (d *decoder) decode(ctx context.Context, m kafka.Message) Record {
	rec := Record{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Raw: m}
	dec, err := d.codecs.DecodeEvent(m.Value)
	if errors.Is(err, ErrUnknownSchema) {
		if rerr := d.resolve(ctx, writerRef{id: dec.SchemaID, fp: dec.Fingerprint}); rerr != nil {
			err = rerr
		} else {
			dec, err = d.codecs.DecodeEvent(m.Value)
		}
	}
	if err != nil {
		rec.Err = fmt.Errorf("%s[%d]@%d: %w", m.Topic, m.Partition, m.Offset, err)
		return rec
	}
	rec.Event = dec.Event
	if dec.Event.Op != OpTruncate {
		key, err := d.codecs.DecodeKey(m.Key)
		if errors.Is(err, ErrUnknownSchema) {
			if ref, herr := readHeader(m.Key); herr == nil {
				if rerr := d.resolve(ctx, ref); rerr != nil {
					err = rerr
				} else {
					key, err = d.codecs.DecodeKey(m.Key)
				}
			}
		}
		if err != nil {
			rec.Err = fmt.Errorf("%s[%d]@%d key: %w", m.Topic, m.Partition, m.Offset, err)
			return rec
		}
		rec.Key = key
		rec.Event.Key = key
	}
	return rec
}

// resolve makes the writer schema of a record known: by id from the registry,
// by fingerprint from the schema topic. An unreachable registry is waited for
// (a record is poison only when the registry says its id does not exist).
func (d *decoder) resolve(ctx context.Context, ref writerRef) error {
	if ref.id == 0 {
		// The caller's context may be a read deadline of 50-500 ms (the
		// consumer reads ahead under one): a lookup cut short by it would call
		// a valid record poison, for good (the chaos rounds dead-lettered
		// snapshot rows as "unknown schema fingerprint" that way). The lookup
		// gets a deadline of its own instead.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), reloadTimeout)
		defer cancel()
		if !d.reload(ctx, ref.fp) {
			return fmt.Errorf("%w %s", ErrUnknownSchema, ref)
		}
		return nil
	}
	backoff := time.Second
	for {
		err := d.codecs.resolveID(ctx, ref.id)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, ErrSchemaNotFound):
			return fmt.Errorf("%w %s: %v", ErrUnknownSchema, ref, err)
		case errors.Is(err, ErrPoison), errors.Is(err, ErrUnknownSchema):
			// ErrUnknownSchema: no registry is configured to look the id up in.
			return err
		case errors.Is(err, ErrRegistryUnavailable):
			d.codecs.reg.log.Warn("schema registry unreachable; waiting for it before decoding", "registry", d.codecs.reg.String(), "error", err)
		default:
			// Refused credentials, an untrusted certificate, an unexpected answer: the
			// configuration's fault or the registry's, never the record's. Dead-lettering
			// would set aside every record until it is fixed; waiting loses none.
			d.codecs.reg.log.Error("schema registry refuses the schema lookup; waiting for it to be fixed before decoding", "registry", d.codecs.reg.String(), "error", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("resolve schema id %d: %w", ref.id, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// reloadTimeout bounds one record's lookup in the schema topic (five scans
// with backoff between them).
const reloadTimeout = 30 * time.Second

func (d *decoder) reload(ctx context.Context, fp uint64) bool {
	// A schema is published before the records that use it, but a consumer can
	// see the records first on a busy broker: look again a few times before
	// calling the record poison.
	for attempt := 0; attempt < 5; attempt++ {
		if _, ok := d.codecs.Lookup(fp); ok {
			return true
		}
		d.mu.Lock()
		_, err := LoadSchemas(ctx, d.brokers, d.security, d.schemaTopic, d.codecs)
		d.mu.Unlock()
		if _, ok := d.codecs.Lookup(fp); ok {
			return true
		}
		if err != nil && ctx.Err() != nil {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Duration(100<<attempt) * time.Millisecond):
		}
	}
	return false
}
