package capture

import (
	"errors"
	"strings"
	"testing"
)

func TestRedactDSN(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"postgres://u:secret@h:5432/db?sslmode=disable", "postgres://u:xxxxx@h:5432/db?sslmode=disable"},
		{"postgresql://u@h/db?password=secret", "postgresql://u@h/db?password=xxxxx"},
		{"host=h user=u password=secret dbname=db", "host=h user=u password=xxxxx dbname=db"},
		{"host=h password='se cret' dbname=db", "host=h password=xxxxx dbname=db"},
		{"postgres://u@h/db", "postgres://u@h/db"},
	} {
		if got := RedactDSN(tc.in); got != tc.want {
			t.Errorf("RedactDSN(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if strings.Contains(RedactDSN(tc.in), "secret") {
			t.Errorf("RedactDSN(%q) leaks the password", tc.in)
		}
	}
}

func TestRedactErr(t *testing.T) {
	t.Parallel()
	base := errors.New("dial postgres://u:hunter2@h/db failed")
	err := redactErr("postgres://u:hunter2@h/db", base)
	if strings.Contains(err.Error(), "hunter2") || !errors.Is(err, base) {
		t.Fatalf("redactErr = %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	ok := Config{DSN: "postgres://u:pw@h/db", Slot: "s1", Publication: "p1", Schemas: []string{"shop"}}.WithDefaults()
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for name, mutate := range map[string]func(*Config){
		"no dsn":          func(c *Config) { c.DSN = "" },
		"bad slot":        func(c *Config) { c.Slot = "Slot-1" },
		"bad publication": func(c *Config) { c.Publication = "" },
		"nothing":         func(c *Config) { c.Schemas = nil },
		"bad table":       func(c *Config) { c.Tables = []string{"orders"} },
		"slow status":     func(c *Config) { c.StatusInterval = 30e9 },
		"chunk > flight":  func(c *Config) { c.ChunkEvents = 10; c.MaxInFlight = 5 },
	} {
		c := ok
		mutate(&c)
		err := c.Validate()
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if strings.Contains(err.Error(), "pw") {
			t.Errorf("%s: error leaks the password: %v", name, err)
		}
	}
}
