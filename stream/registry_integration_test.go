package stream_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/starstream/starstream/stream"
	"github.com/starstream/starstream/stream/streamtest"
)

// With a schema registry (the real one `make up` starts), the writer registers
// <topic>-key and <topic>-value and writes the Confluent wire format; an added
// column registers a new version; a consumer in a fresh process decodes both
// versions through the registry; a change the subject's compatibility level
// refuses is reported as such and leaves the writer on its previous version.
func TestRegistryWireFormatEndToEnd(t *testing.T) {
	t.Parallel()
	brokers := streamtest.Brokers(t)
	reg := streamtest.Registry(t)
	ns := streamtest.Name(t, "r")
	topic := "cdc." + ns + ".items"
	streamtest.DeleteTopics(t, brokers, topic)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	t.Cleanup(func() {
		for _, s := range []string{topic + "-key", topic + "-value"} {
			_ = reg.DeleteSubject(context.Background(), s)
		}
	})
	log := slog.New(slog.DiscardHandler)

	w, err := stream.NewWriter(stream.WriterConfig{Brokers: brokers, Topics: stream.TopicConfig{Partitions: 3}},
		stream.NewRegistryCodecs(reg), log)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	v1, err := w.Register(ctx, topic, itemsSchema(ns, "items"))
	if err != nil {
		t.Fatal(err)
	}
	if v1.KeyID <= 0 || v1.ValueID <= 0 {
		t.Fatalf("registered without ids: key %d value %d", v1.KeyID, v1.ValueID)
	}
	var evs []stream.Event
	for i := 0; i < 10; i++ {
		evs = append(evs, event(ns, "items", int64(i), 100, uint64(i)))
	}
	if err := w.Write(ctx, evs); err != nil {
		t.Fatal(err)
	}

	// ADD COLUMN: a new version of the value subject; the key subject keeps one.
	s2 := itemsSchema(ns, "items")
	s2.Columns = append(s2.Columns, stream.Column{Name: "qty", Type: stream.Type{Kind: stream.KindInt}, Nullable: true})
	v2, err := w.Register(ctx, topic, s2)
	if err != nil {
		t.Fatal(err)
	}
	if v2.ValueID == v1.ValueID || v2.KeyID != v1.KeyID {
		t.Fatalf("ids after ADD COLUMN: value %d→%d, key %d→%d", v1.ValueID, v2.ValueID, v1.KeyID, v2.KeyID)
	}
	for i := 10; i < 20; i++ {
		ev := event(ns, "items", int64(i), 200, uint64(i))
		ev.After["qty"] = int64(i * 10)
		evs = append(evs, ev)
		if err := w.Write(ctx, evs[len(evs)-1:]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Mark(ctx, 200); err != nil {
		t.Fatal(err)
	}
	for subject, want := range map[string][]int{topic + "-value": {1, 2}, topic + "-key": {1}} {
		if got, err := reg.Versions(ctx, subject); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("versions of %s: %v, %v; want %v", subject, got, err, want)
		}
	}

	// Refused by the subject's compatibility level: a clear error, no new version,
	// and the writer keeps writing the version it had.
	if err := reg.SetCompatibility(ctx, topic+"-value", "BACKWARD"); err != nil {
		t.Fatal(err)
	}
	s3 := itemsSchema(ns, "items")
	s3.Columns[1].Type = stream.Type{Kind: stream.KindFloat} // note: text → double
	_, err = w.Register(ctx, topic, s3)
	if !errors.Is(err, stream.ErrIncompatibleSchema) {
		t.Fatalf("incompatible change: %v, want ErrIncompatibleSchema", err)
	}
	for _, want := range []string{topic + "-value", "HTTP 409", "compatibility"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	t.Logf("refused: %v", err)
	if got, _ := reg.Versions(ctx, topic+"-value"); len(got) != 2 {
		t.Errorf("versions after a refused change: %v", got)
	}

	// Raw records: magic byte 0 and the ids the registry gave.
	ids := map[int]bool{}
	for p := 0; p < 3; p++ {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: p, MaxWait: time.Second})
		for {
			m, err := r.FetchMessage(ctx)
			if err != nil {
				t.Fatalf("partition %d: %v", p, err)
			}
			if _, ok := stream.MarkerLSN(m); ok {
				break
			}
			if m.Value[0] != 0 || m.Key[0] != 0 {
				t.Fatalf("record %d@%d: key %x value %x, want the Confluent magic byte 0", p, m.Offset, m.Key[:5], m.Value[:5])
			}
			if kid := int(binary.BigEndian.Uint32(m.Key[1:5])); kid != v1.KeyID {
				t.Errorf("key schema id %d, want %d", kid, v1.KeyID)
			}
			ids[int(binary.BigEndian.Uint32(m.Value[1:5]))] = true
		}
		r.Close()
	}
	if !reflect.DeepEqual(ids, map[int]bool{v1.ValueID: true, v2.ValueID: true}) {
		t.Errorf("value schema ids %v, want %d and %d", ids, v1.ValueID, v2.ValueID)
	}

	// A consumer in a "fresh process": its own registry client and codecs.
	fresh, err := stream.NewRegistry(stream.RegistryConfig{URL: streamtest.RegistryURL(t)}, log)
	if err != nil {
		t.Fatal(err)
	}
	c, err := stream.NewConsumer(stream.ConsumerConfig{Brokers: brokers, Group: streamtest.Name(t, "g"), Topics: []string{topic}},
		stream.NewRegistryCodecs(fresh), log)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[int64]map[string]any{}
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	err = c.Run(cctx, stream.HandlerFunc(func(_ context.Context, b stream.Batch) error {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range b.Records {
			if r.Err != nil {
				return r.Err
			}
			got[r.Key["id"].(int64)] = r.Event.After
		}
		if b.Final && b.Watermark >= 200 {
			stop()
		}
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 20 {
		t.Fatalf("consumed %d keys, want 20", len(got))
	}
	for _, ev := range evs {
		id := ev.Key["id"].(int64)
		if !reflect.DeepEqual(got[id], ev.After) {
			t.Errorf("id %d: %v, want %v", id, got[id], ev.After)
		}
	}
}

// A schema lookup slower than the consumer's read slices (500 ms, 50 ms) must
// not turn good records into dead letters: a registry answering id lookups
// after 1.2 s (a proxy in front of the real one) still yields every record.
func TestSlowSchemaLookupIsNotPoison(t *testing.T) {
	t.Parallel()
	brokers := streamtest.Brokers(t)
	reg := streamtest.Registry(t)
	ns := streamtest.Name(t, "r")
	topic := "cdc." + ns + ".items"
	streamtest.DeleteTopics(t, brokers, topic)
	t.Cleanup(func() {
		for _, s := range []string{topic + "-key", topic + "-value"} {
			_ = reg.DeleteSubject(context.Background(), s)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	w, err := stream.NewWriter(stream.WriterConfig{Brokers: brokers, Topics: stream.TopicConfig{Partitions: 2}},
		stream.NewRegistryCodecs(reg), log)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Register(ctx, topic, itemsSchema(ns, "items")); err != nil {
		t.Fatal(err)
	}
	var evs []stream.Event
	for i := 0; i < 6; i++ {
		evs = append(evs, event(ns, "items", int64(i), 100, uint64(i)))
	}
	if err := w.Write(ctx, evs); err != nil {
		t.Fatal(err)
	}
	if err := w.Mark(ctx, 100); err != nil {
		t.Fatal(err)
	}

	real, err := url.Parse(streamtest.RegistryURL(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: real.Scheme, Host: real.Host})
	slow := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		time.Sleep(1200 * time.Millisecond)
		proxy.ServeHTTP(rw, r)
	}))
	defer slow.Close()
	fresh, err := stream.NewRegistry(stream.RegistryConfig{URL: slow.URL + real.Path}, log)
	if err != nil {
		t.Fatal(err)
	}
	c, err := stream.NewConsumer(stream.ConsumerConfig{Brokers: brokers, Group: streamtest.Name(t, "g"), Topics: []string{topic}},
		stream.NewRegistryCodecs(fresh), log)
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	err = c.Run(cctx, stream.HandlerFunc(func(_ context.Context, b stream.Batch) error {
		for _, r := range b.Records {
			if r.Err != nil {
				return fmt.Errorf("good record handed over as poison: %w", r.Err)
			}
			got++
		}
		if b.Final && b.Watermark >= 100 {
			stop()
		}
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	if got != len(evs) {
		t.Errorf("%d records, want %d", got, len(evs))
	}
}
