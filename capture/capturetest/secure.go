package capturetest

import (
	"context"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/starstream/starstream/capture"
	"github.com/starstream/starstream/stream/streamtest"
)

// CaptureRole is the least-privilege role of the local stack (LOGIN REPLICATION,
// no superuser, TLS only); see deploy/local/README.md, "TLS and SASL".
const CaptureRole = "starstream_capture"

// CapturePassword is CaptureRole's password on the local stack.
const CapturePassword = "capture-secret"

// CaptureDSN returns the DSN of CaptureRole over TLS with the server certificate
// verified (sslmode=verify-full): STARSTREAM_PG_CAPTURE_DSN, or CaptureRole on
// the host, port and database of DSN() with the CA of streamtest.TLSCAFile. It
// fails the test, never skips, when that login does not work, saying how to get
// a stack that has it.
func CaptureDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv("STARSTREAM_PG_CAPTURE_DSN")
	if dsn == "" {
		u, err := url.Parse(DSN())
		if err != nil {
			t.Fatalf("STARSTREAM_PG_DSN is not a URL: set STARSTREAM_PG_CAPTURE_DSN")
		}
		u.User = url.UserPassword(CaptureRole, CapturePassword)
		u.RawQuery = url.Values{"sslmode": {"verify-full"}, "sslrootcert": {streamtest.TLSCAFile(t)}}.Encode()
		dsn = u.String()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("cannot log in as %s over TLS (%s): the stack predates its TLS setup; run `make up` "+
			"(PostgreSQL reloads TLS and pg_hba) or restart it (make down && make up): %v",
			CaptureRole, capture.RedactDSN(dsn), redact(dsn, err))
	}
	conn.Close(ctx)
	return dsn
}

// redact removes the DSN's password from an error's text.
func redact(dsn string, err error) string {
	msg := err.Error()
	if r := capture.RedactDSN(dsn); r != dsn {
		msg = strings.ReplaceAll(msg, dsn, r)
	}
	return msg
}
