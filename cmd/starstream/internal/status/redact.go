package status

import (
	"regexp"
	"strings"
)

// The snapshot is redacted by whoever builds it; the page redacts again, since
// an error text can quote a connection string or a config line it was not
// meant to.
var (
	// scheme://user:password@host → scheme://user:xxxxx@host
	urlPassword = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*):[^@\s]*@`)
	// password=…, "password": "…", token: …, sasl.password=…
	keyValue = regexp.MustCompile(`(?i)((?:password|passwd|pwd|secret|token|api[_-]?key|credentials?)["']?\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s&;,)}\]]+)`)
)

// redactor removes passwords from texts shown on the page and in the API.
type redactor struct {
	secrets []string
}

func newRedactor(secrets []string) redactor {
	var keep []string
	for _, s := range secrets {
		if s = strings.TrimSpace(s); s != "" {
			keep = append(keep, s)
		}
	}
	return redactor{secrets: keep}
}

func (r redactor) text(s string) string {
	if s == "" {
		return s
	}
	for _, secret := range r.secrets {
		s = strings.ReplaceAll(s, secret, "xxxxx")
	}
	s = urlPassword.ReplaceAllString(s, "${1}:xxxxx@")
	return keyValue.ReplaceAllString(s, "${1}xxxxx")
}

// snapshot returns a copy with every free text redacted.
func (r redactor) snapshot(s Snapshot) Snapshot {
	out := s
	out.Pipelines = make([]Node, len(s.Pipelines))
	for i, n := range s.Pipelines {
		n.LastError = r.text(n.LastError)
		out.Pipelines[i] = n
	}
	if s.Capture != nil {
		c := *s.Capture
		c.DSN, c.LastError = r.text(c.DSN), r.text(c.LastError)
		out.Capture = &c
	}
	return out
}
