// Package streamtest helps tests that talk to the real Kafka broker started by
// `make up`, and validates the ordering guarantees of streams.
package streamtest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/starstream/starstream/stream"
)

// DefaultBrokers is where `make up` starts Kafka.
const DefaultBrokers = "127.0.0.1:19092"

// Brokers returns the test brokers (STARSTREAM_KAFKA_BROKERS, default DefaultBrokers)
// and fails the test when none answers.
func Brokers(t testing.TB) []string {
	t.Helper()
	env := os.Getenv("STARSTREAM_KAFKA_BROKERS")
	if env == "" {
		env = DefaultBrokers
	}
	brokers := strings.Split(env, ",")
	conn, err := net.DialTimeout("tcp", brokers[0], 3*time.Second)
	if err != nil {
		t.Fatalf("kafka is not reachable at %s (run `make up`): %v", brokers[0], err)
	}
	conn.Close()
	return brokers
}

// DefaultRegistryURL is the Confluent API of the schema registry `make up` starts.
const DefaultRegistryURL = "http://127.0.0.1:18081/apis/ccompat/v7"

// Registry returns a client of the test schema registry (STARSTREAM_REGISTRY_URL,
// default DefaultRegistryURL) and fails the test when it does not answer.
func Registry(t testing.TB) *stream.Registry {
	t.Helper()
	u := RegistryURL(t)
	reg, err := stream.NewRegistry(stream.RegistryConfig{URL: u}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// RegistryURL returns the test schema registry's URL and fails the test when it
// does not answer.
func RegistryURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("STARSTREAM_REGISTRY_URL")
	if u == "" {
		u = DefaultRegistryURL
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u+"/subjects", nil)
	if err != nil {
		t.Fatalf("schema registry url %s: %v", stream.RedactRegistryURL(u), err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("schema registry is not reachable at %s (run `make up`): %v", stream.RedactRegistryURL(u), err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("schema registry at %s answers GET /subjects with HTTP %d", stream.RedactRegistryURL(u), res.StatusCode)
	}
	return u
}

var counter atomic.Int64

// Name returns a name unique to this test run, for topics, groups and slots.
func Name(t testing.TB, prefix string) string {
	t.Helper()
	clean := strings.NewReplacer("/", "_", " ", "_", "#", "_").Replace(strings.ToLower(t.Name()))
	if len(clean) > 30 {
		clean = clean[:30]
	}
	return fmt.Sprintf("%s_%s_%d_%d", prefix, clean, time.Now().UnixNano()%1e9, counter.Add(1))
}

// DeleteTopics removes topics at the end of the test.
func DeleteTopics(t testing.TB, brokers []string, topics ...string) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c := &kafka.Client{Addr: kafka.TCP(brokers...)}
		_, _ = c.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: topics})
	})
}

// ReadAll reads every partition of a topic from the start until each partition
// has passed a marker at or above until, and returns the decoded records and
// markers seen, in partition order, feeding each to the validator when one is given.
func ReadAll(ctx context.Context, t testing.TB, brokers []string, topic string, codecs *stream.Codecs, until stream.LSN, v *Validator) []stream.Record {
	t.Helper()
	n, err := stream.NewAdmin(brokers, nil).Partitions(ctx, topic)
	if err != nil {
		t.Fatalf("partitions of %s: %v", topic, err)
	}
	if _, err := stream.LoadSchemas(ctx, brokers, nil, "", codecs); err != nil {
		t.Fatalf("load schemas: %v", err)
	}
	var out []stream.Record
	for p := 0; p < n; p++ {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: p, MaxWait: time.Second, MaxBytes: 32 << 20})
		for {
			m, err := r.FetchMessage(ctx)
			if err != nil {
				r.Close()
				t.Fatalf("read %s[%d] waiting for watermark %s: %v", topic, p, until, err)
			}
			if lsn, ok := stream.MarkerLSN(m); ok {
				if v != nil {
					v.Marker(topic, p, lsn)
				}
				if lsn >= until {
					break
				}
				continue
			}
			if err := codecs.Resolve(ctx, m.Value); err != nil {
				r.Close()
				t.Fatalf("resolve the schema of %s[%d]@%d: %v", topic, p, m.Offset, err)
			}
			dec, err := codecs.DecodeEvent(m.Value)
			if err != nil {
				r.Close()
				t.Fatalf("decode %s[%d]@%d: %v", topic, p, m.Offset, err)
			}
			rec := stream.Record{Topic: topic, Partition: p, Offset: m.Offset, Event: dec.Event, Raw: m}
			if dec.Event.Op != stream.OpTruncate {
				if err := codecs.Resolve(ctx, m.Key); err != nil {
					t.Fatalf("resolve the key schema of %s[%d]@%d: %v", topic, p, m.Offset, err)
				}
				if rec.Key, err = codecs.DecodeKey(m.Key); err != nil {
					t.Fatalf("decode key %s[%d]@%d: %v", topic, p, m.Offset, err)
				}
				rec.Event.Key = rec.Key
			}
			if v != nil {
				v.Observe(topic, p, fmt.Sprint(rec.Key), dec.Event.Pos)
			}
			out = append(out, rec)
		}
		r.Close()
	}
	return out
}
