package deploytest

import (
	"path"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// credentialFile is a configuration key that names a file holding a credential, and
// where deploy/k8s provides that file.
type credentialFile struct {
	secret string   // "<Secret>/<key>" of secret.yaml that holds the file
	users  []string // the processes (a container's first argument) that use the credential
	// atStart: every process that names the file reads it at start, user or not
	// (LoadConfig, stream.NewSecurity); otherwise only the users open it.
	atStart  bool
	required bool // its users cannot work without it
}

// processes are the first arguments of the containers: capture, and run for a pipeline.
var processes = []string{"capture", "run"}

// credentialFiles maps the configuration keys of credential files to their Secrets. A
// *_file key missing here must still be a file of a mounted Secret in every process.
var credentialFiles = map[string]credentialFile{
	// Pipelines never log in to PostgreSQL; capture cannot without it.
	"postgres.password_file": {secret: "starstream-postgres/password", users: []string{"capture"}, atStart: true, required: true},
	// Every process talks to Kafka and encodes or decodes through the registry.
	"kafka.sasl_password_file":            {secret: "starstream-kafka/password", users: processes, atStart: true},
	"kafka.schema_registry_password_file": {secret: "starstream-schema-registry/password", users: processes, atStart: true},
	// A private CA's certificate, in the same Secret as the password (commented out in configmap.yaml).
	"kafka.tls_ca_file":             {secret: "starstream-kafka/ca.crt", users: processes, atStart: true},
	"kafka.schema_registry_ca_file": {secret: "starstream-schema-registry/ca.crt", users: processes, atStart: true},
	// Read when the warehouse opens, which capture never does; optional with Workload Identity.
	"warehouse.bigquery_credentials_file": {secret: "starstream-bigquery/credentials.json", users: []string{"run"}},
}

func TestK8sSecretsHoldPlaceholdersAndReachTheirReaders(t *testing.T) {
	t.Parallel()
	ms := loadManifests(t)
	secrets := map[string]*corev1.Secret{}
	for _, s := range objectsOf[*corev1.Secret](ms) {
		secrets[s.Name] = s
		if len(s.Data) > 0 {
			t.Errorf("secret %s: use stringData placeholders, not data", s.Name)
		}
		for k, v := range s.StringData {
			if v != "REPLACE_ME" {
				t.Errorf("secret %s key %s is not the placeholder REPLACE_ME: real credentials never go in git", s.Name, k)
			}
		}
	}
	keys := configKeys(t)
	for key, cf := range credentialFiles {
		section, name, _ := strings.Cut(key, ".")
		if _, ok := keys[section][name]; !ok {
			t.Errorf("credentialFiles: %s is not a key of cmd/starstream's Config", key)
		}
		secret, k, _ := strings.Cut(cf.secret, "/")
		if s, ok := secrets[secret]; !ok || s.StringData[k] == "" {
			t.Errorf("credentialFiles: %s is held by %s, which secret.yaml does not define", key, cf.secret)
		}
	}
	var cm *corev1.ConfigMap
	for _, c := range objectsOf[*corev1.ConfigMap](ms) {
		if c.Name == "starstream-config" {
			cm = c
		}
	}
	if cm == nil {
		t.Fatal("no ConfigMap starstream-config")
	}
	raw := cm.Data["starstream.yaml"]
	doc := checkConfigFile(t, "configmap.yaml starstream.yaml", []byte(raw))
	if doc["warehouse"]["kind"] != "bigquery" {
		t.Error("warehouse.kind must be bigquery: pipelines run in many pods, and an embedded DuckDB file has one writer")
	}
	if addr, _ := doc["http"]["addr"].(string); strings.HasPrefix(addr, "127.") || strings.HasPrefix(addr, "localhost") {
		t.Errorf("http.addr %q: probes and Prometheus reach the pod IP, not loopback", addr)
	}
	checkNoCredentials(t, "configmap.yaml starstream.yaml", raw, doc, secrets)
	for _, d := range objectsOf[*appsv1.Deployment](ms) {
		checkCredentialFiles(t, d, doc, secrets, keys)
	}
}

// checkNoCredentials fails when a configuration holds a credential itself instead of
// naming its file: a password key set, a URL with a password, or a Secret's value.
func checkNoCredentials(t *testing.T, where, raw string, doc map[string]map[string]any, secrets map[string]*corev1.Secret) {
	t.Helper()
	for _, section := range sortedKeys(doc) {
		for _, key := range sortedKeys(doc[section]) {
			s, _ := doc[section][key].(string)
			if s == "" {
				continue
			}
			if urlPassword.MatchString(s) {
				t.Errorf("%s: %s.%s carries a password in a URL", where, section, key)
			}
			if secretName.MatchString(key) && !strings.HasSuffix(key, "_file") {
				t.Errorf("%s: %s.%s holds a credential: put it in a Secret and name its file with %s_file", where, section, key, key)
			}
		}
	}
	for _, s := range secrets {
		for k, v := range s.StringData {
			if v != "" && strings.Contains(raw, v) {
				t.Errorf("%s contains the value of Secret %s key %s", where, s.Name, k)
			}
		}
	}
}

// checkCredentialFiles fails unless every credential file that d's process reads is a
// file of a Secret mounted in its pod (the one credentialFiles names), the process uses
// every credential it reads, and every Secret mounted is read: each process gets the
// credentials it uses and no others.
func checkCredentialFiles(t *testing.T, d *appsv1.Deployment, doc map[string]map[string]any, secrets map[string]*corev1.Secret,
	keys map[string]map[string]string) {
	t.Helper()
	c := d.Spec.Template.Spec.Containers[0]
	process := c.Args[0]
	files := secretFiles(t, d, secrets)
	named := configuredFiles(doc, c.Env, keys)
	read := map[string]bool{} // Secret names
	for _, key := range sortedKeys(named) {
		file := named[key]
		cf, ok := credentialFiles[key]
		if !ok {
			cf = credentialFile{users: processes, atStart: true}
		}
		uses := slices.Contains(cf.users, process)
		switch {
		case !uses && !cf.atStart:
			continue // named in the shared ConfigMap, never opened by this process
		case !uses:
			t.Errorf("%s: %s reads %s at start but does not use it: name it for %v only", d.Name, process, key, cf.users)
			continue
		}
		got, ok := files[file]
		switch {
		case !ok:
			t.Errorf("%s: %s %q is not a file of a Secret mounted in the pod", d.Name, key, file)
		case cf.secret != "" && got != cf.secret:
			t.Errorf("%s: %s %q is %s, want %s", d.Name, key, file, got, cf.secret)
		}
		secret, _, _ := strings.Cut(got, "/")
		read[secret] = true
	}
	for _, key := range sortedKeys(credentialFiles) {
		if cf := credentialFiles[key]; cf.required && slices.Contains(cf.users, process) && named[key] == "" {
			t.Errorf("%s: names no %s: %s needs the %s file", d.Name, key, process, cf.secret)
		}
	}
	for _, f := range sortedKeys(files) {
		if secret, _, _ := strings.Cut(files[f], "/"); !read[secret] {
			read[secret] = true // once per Secret
			t.Errorf("%s mounts Secret %s, whose files its configuration does not read", d.Name, secret)
		}
	}
}

// secretFiles returns the files that d's container sees from Secrets: path → "<Secret>/<key>".
func secretFiles(t *testing.T, d *appsv1.Deployment, secrets map[string]*corev1.Secret) map[string]string {
	t.Helper()
	vols := map[string]corev1.Volume{}
	for _, v := range d.Spec.Template.Spec.Volumes {
		vols[v.Name] = v
	}
	files := map[string]string{}
	for _, m := range d.Spec.Template.Spec.Containers[0].VolumeMounts {
		s := vols[m.Name].Secret
		if s == nil {
			continue
		}
		sec, ok := secrets[s.SecretName]
		if !ok {
			t.Errorf("%s mounts undefined Secret %s", d.Name, s.SecretName)
			continue
		}
		for k := range sec.StringData {
			files[path.Join(m.MountPath, k)] = s.SecretName + "/" + k
		}
	}
	return files
}

// configuredFiles returns the files (section.key → path) that a container's configuration
// names with *_file keys: the ConfigMap's, overridden by its STARSTREAM_<SECTION>_<KEY>
// variables as cmd/starstream does. An empty value names no file.
func configuredFiles(doc map[string]map[string]any, env []corev1.EnvVar, keys map[string]map[string]string) map[string]string {
	out := map[string]string{}
	for section, kv := range doc {
		for key, v := range kv {
			if s, _ := v.(string); strings.HasSuffix(key, "_file") && s != "" {
				out[section+"."+key] = s
			}
		}
	}
	for section, kv := range keys {
		for key := range kv {
			if !strings.HasSuffix(key, "_file") {
				continue
			}
			i := slices.IndexFunc(env, func(e corev1.EnvVar) bool { return e.Name == "STARSTREAM_"+strings.ToUpper(section+"_"+key) })
			switch {
			case i < 0:
			case env[i].Value != "":
				out[section+"."+key] = env[i].Value
			default:
				delete(out, section+"."+key)
			}
		}
	}
	return out
}
