package deploytest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// serviceMonitor is the part of monitoring.coreos.com/v1 ServiceMonitor that these
// manifests use, with the CRD's field names: the type is not in k8s.io/api, and a local
// struct decoded strictly still rejects a misspelt or unsupported field. Add fields here,
// spelled as in the CRD, when the manifest needs them.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		JobLabel          string               `json:"jobLabel,omitempty"`
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector *struct {
			Any        bool     `json:"any,omitempty"`
			MatchNames []string `json:"matchNames,omitempty"`
		} `json:"namespaceSelector,omitempty"`
		PodTargetLabels []string `json:"podTargetLabels,omitempty"`
		TargetLabels    []string `json:"targetLabels,omitempty"`
		Endpoints       []struct {
			Port          string `json:"port,omitempty"`
			Path          string `json:"path,omitempty"`
			Scheme        string `json:"scheme,omitempty"`
			Interval      string `json:"interval,omitempty"`
			ScrapeTimeout string `json:"scrapeTimeout,omitempty"`
			HonorLabels   bool   `json:"honorLabels,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// prometheusRule is monitoring.coreos.com/v1 PrometheusRule; its groups are compared
// with deploy/prometheus/alerts.yml.
type prometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Groups []ruleGroup `json:"groups"`
	} `json:"spec"`
}

type ruleGroup struct {
	Name     string `json:"name"`
	Interval string `json:"interval,omitempty"`
	Rules    []struct {
		Alert         string            `json:"alert,omitempty"`
		Record        string            `json:"record,omitempty"`
		Expr          string            `json:"expr"`
		For           string            `json:"for,omitempty"`
		KeepFiringFor string            `json:"keep_firing_for,omitempty"`
		Labels        map[string]string `json:"labels,omitempty"`
		Annotations   map[string]string `json:"annotations,omitempty"`
	} `json:"rules"`
}

// kustomization is the part of kustomize.config.k8s.io/v1beta1 Kustomization used here.
type kustomization struct {
	APIVersion string           `json:"apiVersion"`
	Kind       string           `json:"kind"`
	Namespace  string           `json:"namespace,omitempty"`
	Resources  []string         `json:"resources"`
	Images     []kustomizeImage `json:"images,omitempty"`
}

type kustomizeImage struct {
	Name    string `json:"name"`
	NewName string `json:"newName,omitempty"`
	NewTag  string `json:"newTag,omitempty"`
	Digest  string `json:"digest,omitempty"`
}

// newObject returns an empty object of the Go type for apiVersion and kind.
func newObject(apiVersion, kind string) (any, error) {
	switch apiVersion + " " + kind {
	case "v1 Namespace":
		return &corev1.Namespace{}, nil
	case "v1 ServiceAccount":
		return &corev1.ServiceAccount{}, nil
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "v1 Secret":
		return &corev1.Secret{}, nil
	case "v1 Service":
		return &corev1.Service{}, nil
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}, nil
	case "apps/v1 StatefulSet":
		return &appsv1.StatefulSet{}, nil
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	case "monitoring.coreos.com/v1 ServiceMonitor":
		return &serviceMonitor{}, nil
	case "monitoring.coreos.com/v1 PrometheusRule":
		return &prometheusRule{}, nil
	}
	return nil, fmt.Errorf("no Go type registered for apiVersion %q kind %q", apiVersion, kind)
}

// decodeStrict decodes one YAML document the way the API server does: YAML to JSON
// rejecting duplicate keys, then case-sensitive JSON rejecting unknown and duplicate
// fields (encoding/json alone would accept `Replicas:` for `replicas:`).
func decodeStrict(doc []byte, into any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strict, err := kjson.UnmarshalStrict(j, into)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// manifest is one decoded document of deploy/k8s.
type manifest struct {
	file string
	doc  int
	kind string
	obj  any
}

func (m manifest) String() string { return fmt.Sprintf("%s#%d (%s)", m.file, m.doc, m.kind) }

// splitDocuments splits a multi-document YAML stream, dropping empty documents.
func splitDocuments(b []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var out [][]byte
	for {
		doc, err := r.Read()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(stripComments(doc))) > 0 {
			out = append(out, doc)
		}
	}
}

func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for _, line := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.Bytes()
}

// k8sFiles lists deploy/k8s/*.yaml except kustomization.yaml, sorted.
func k8sFiles(t *testing.T) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(repoRoot(t), "deploy", "k8s", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range paths {
		if filepath.Base(p) != "kustomization.yaml" {
			out = append(out, filepath.Base(p))
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		t.Fatal("no manifests in deploy/k8s")
	}
	return out
}

// loadManifests decodes every document of deploy/k8s/*.yaml strictly into its API type.
func loadManifests(t *testing.T) []manifest {
	t.Helper()
	var out []manifest
	for _, name := range k8sFiles(t) {
		b, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "k8s", name))
		if err != nil {
			t.Fatal(err)
		}
		docs, err := splitDocuments(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for i, doc := range docs {
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				t.Fatalf("%s#%d: %v", name, i, err)
			}
			obj, err := newObject(tm.APIVersion, tm.Kind)
			if err != nil {
				t.Errorf("%s#%d: %v", name, i, err)
				continue
			}
			if err := decodeStrict(doc, obj); err != nil {
				t.Errorf("%s#%d (%s): %v", name, i, tm.Kind, err)
				continue
			}
			out = append(out, manifest{file: name, doc: i, kind: tm.Kind, obj: obj})
		}
	}
	return out
}

// objectsOf returns the decoded objects of type T.
func objectsOf[T any](ms []manifest) []T {
	var out []T
	for _, m := range ms {
		if o, ok := m.obj.(T); ok {
			out = append(out, o)
		}
	}
	return out
}

func TestStrictDecodingRejectsMistakes(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		obj any
		doc string
	}{
		"unknown field": {&appsv1.Deployment{}, "apiVersion: apps/v1\nkind: Deployment\nspec:\n  replica: 2\n"},
		"wrong case":    {&appsv1.Deployment{}, "apiVersion: apps/v1\nkind: Deployment\nspec:\n  Replicas: 2\n"},
		"duplicate key": {&appsv1.Deployment{}, "apiVersion: apps/v1\nkind: Deployment\nspec:\n  replicas: 2\n  replicas: 3\n"},
		"nested unknown": {&appsv1.Deployment{}, "apiVersion: apps/v1\nkind: Deployment\nspec:\n  template:\n    spec:\n" +
			"      containers:\n      - name: x\n        readinessprobe: {}\n"},
		"bad quantity":   {&corev1.Container{}, "name: x\nresources:\n  limits:\n    memory: 1 GB\n"},
		"monitor field":  {&serviceMonitor{}, "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nspec:\n  endpoints:\n  - port: http\n    metricsPath: /metrics\n"},
		"rule field":     {&prometheusRule{}, "spec:\n  groups:\n  - name: g\n    rules:\n    - alert: A\n      expr: up\n      severity: page\n"},
		"pdb wrong type": {&policyv1.PodDisruptionBudget{}, "spec:\n  minAvailable: [1]\n"},
	}
	for name, c := range cases {
		if err := decodeStrict([]byte(c.doc), c.obj); err == nil {
			t.Errorf("%s: accepted %q", name, c.doc)
		}
	}
	var d appsv1.Deployment
	if err := decodeStrict([]byte("apiVersion: apps/v1\nkind: Deployment\nspec:\n  replicas: 2\n"), &d); err != nil || *d.Spec.Replicas != 2 {
		t.Errorf("a valid document failed: %v", err)
	}
}
