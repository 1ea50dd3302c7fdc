package deploytest

import (
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

const (
	namespace  = "starstream"
	configPath = "/etc/starstream/starstream.yaml"
	// imageUID is the USER of deploy/docker/Dockerfile (TestDockerfile checks that side).
	imageUID = 65532
)

// selects reports whether a label selector matches a set of labels.
func selects(t *testing.T, sel *metav1.LabelSelector, set map[string]string) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatalf("selector %v: %v", sel, err)
	}
	return !s.Empty() && s.Matches(labels.Set(set))
}

func TestK8sDocumentsDecodeStrictly(t *testing.T) {
	t.Parallel()
	ms := loadManifests(t)
	seen := map[string]bool{}
	for _, m := range ms {
		meta := objectMeta(m.obj)
		if errs := validation.IsDNS1123Subdomain(meta.Name); len(errs) > 0 {
			t.Errorf("%s: name %q: %v", m, meta.Name, errs)
		}
		if m.kind != "Namespace" && meta.Namespace != namespace {
			t.Errorf("%s: namespace %q, want %q", m, meta.Namespace, namespace)
		}
		if meta.Labels["app.kubernetes.io/part-of"] != "starstream" {
			t.Errorf("%s: missing label app.kubernetes.io/part-of=starstream", m)
		}
		key := m.kind + "/" + meta.Name
		if seen[key] {
			t.Errorf("%s: %s defined twice", m, key)
		}
		seen[key] = true
	}
	kinds := map[string]int{}
	for _, m := range ms {
		kinds[m.kind]++
	}
	for _, k := range []string{"Namespace", "ConfigMap", "Secret", "Deployment", "Service", "ServiceMonitor", "PodDisruptionBudget", "PrometheusRule"} {
		if kinds[k] == 0 {
			t.Errorf("no %s in deploy/k8s", k)
		}
	}
	t.Logf("%d documents: %v", len(ms), kinds)
}

func objectMeta(obj any) metav1.ObjectMeta {
	switch o := obj.(type) {
	case *corev1.Namespace:
		return o.ObjectMeta
	case *corev1.ServiceAccount:
		return o.ObjectMeta
	case *corev1.ConfigMap:
		return o.ObjectMeta
	case *corev1.Secret:
		return o.ObjectMeta
	case *corev1.Service:
		return o.ObjectMeta
	case *appsv1.Deployment:
		return o.ObjectMeta
	case *appsv1.StatefulSet:
		return o.ObjectMeta
	case *policyv1.PodDisruptionBudget:
		return o.ObjectMeta
	case *serviceMonitor:
		return o.ObjectMeta
	case *prometheusRule:
		return o.ObjectMeta
	}
	return metav1.ObjectMeta{}
}

func TestK8sKustomizationListsEveryManifest(t *testing.T) {
	t.Parallel()
	var k kustomization
	if err := decodeStrict(readFile(t, "deploy/k8s/kustomization.yaml"), &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" || k.Namespace != namespace {
		t.Errorf("kustomization header: %+v", k)
	}
	// secret.yaml holds placeholders: applying it with the rest would overwrite the real
	// credentials at every deploy.
	want := slices.DeleteFunc(k8sFiles(t), func(f string) bool { return f == "secret.yaml" })
	got := slices.Sorted(slices.Values(k.Resources))
	if !slices.Equal(got, want) {
		t.Errorf("kustomization resources %v, want every manifest but secret.yaml: %v", got, want)
	}
	for _, d := range objectsOf[*appsv1.Deployment](loadManifests(t)) {
		for _, c := range d.Spec.Template.Spec.Containers {
			name, _, _ := strings.Cut(c.Image, ":")
			if !slices.ContainsFunc(k.Images, func(i kustomizeImage) bool { return i.Name == name }) {
				t.Errorf("%s: image %s is not set by the kustomization's images", d.Name, name)
			}
		}
	}
}

func TestK8sCaptureRunsLeaderAndStandby(t *testing.T) {
	t.Parallel()
	ms := loadManifests(t)
	var captures []*appsv1.Deployment
	for _, d := range objectsOf[*appsv1.Deployment](ms) {
		if c := d.Spec.Template.Spec.Containers; len(c) > 0 && len(c[0].Args) > 0 && c[0].Args[0] == "capture" {
			captures = append(captures, d)
		}
	}
	if len(captures) != 1 {
		t.Fatalf("%d capture Deployments, want 1", len(captures))
	}
	d := captures[0]
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("capture replicas %s, want 2 (leader + standby)", replicas(d))
	}
	// The advisory lock keeps a second reader off the slot: no Recreate, and a rolling
	// update that never drops below the current replicas.
	if d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
		t.Error("capture uses Recreate: the leader lock makes it needless and it drops the standby on every deploy")
	}
	if ru := d.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
		t.Error("capture rollingUpdate.maxUnavailable must be 0, so a standby exists throughout a deploy")
	}
	pdb := pdbFor(t, ms, d)
	if pdb == nil || pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() < 1 {
		t.Errorf("capture needs a PodDisruptionBudget with minAvailable ≥ 1, got %+v", pdb)
	}
}

func replicas(d *appsv1.Deployment) string {
	if d.Spec.Replicas == nil {
		return "unset (1)"
	}
	return strconv.Itoa(int(*d.Spec.Replicas))
}

func pdbFor(t *testing.T, ms []manifest, d *appsv1.Deployment) *policyv1.PodDisruptionBudget {
	t.Helper()
	var found *policyv1.PodDisruptionBudget
	for _, p := range objectsOf[*policyv1.PodDisruptionBudget](ms) {
		if selects(t, p.Spec.Selector, d.Spec.Template.Labels) {
			if found != nil {
				t.Errorf("%s: selected by PodDisruptionBudgets %s and %s", d.Name, found.Name, p.Name)
			}
			found = p
		}
	}
	return found
}

func TestK8sDeploysEveryPipeline(t *testing.T) {
	t.Parallel()
	ms := loadManifests(t)
	deployed := map[string]string{}
	for _, d := range objectsOf[*appsv1.Deployment](ms) {
		c := d.Spec.Template.Spec.Containers[0]
		if len(c.Args) == 0 || c.Args[0] != "run" {
			continue
		}
		var names []string
		for _, a := range c.Args[1:] {
			if list, ok := strings.CutPrefix(a, "--pipelines="); ok {
				names = append(names, strings.Split(list, ",")...)
			}
		}
		if len(names) != 1 {
			t.Errorf("%s: runs %v; one pipeline per Deployment so each scales through its own consumer group", d.Name, names)
			continue
		}
		name := names[0]
		if prev, ok := deployed[name]; ok {
			t.Errorf("pipeline %s deployed by both %s and %s", name, prev, d.Name)
		}
		deployed[name] = d.Name
		if got := d.Spec.Template.Labels["starstream.dev/pipeline"]; got != name {
			t.Errorf("%s: label starstream.dev/pipeline=%q, want %q", d.Name, got, name)
		}
		if d.Spec.Replicas == nil || *d.Spec.Replicas < 1 {
			t.Errorf("%s: replicas %s", d.Name, replicas(d))
		}
		if p := pdbFor(t, ms, d); p == nil || p.Spec.MaxUnavailable == nil {
			t.Errorf("%s: needs a PodDisruptionBudget with maxUnavailable (minAvailable would block drains of one replica)", d.Name)
		}
	}
	if m := missingKeys(pipelines, deployed); len(m) > 0 {
		t.Errorf("pipelines without a Deployment: %v", m)
	}
	for name := range deployed {
		if !slices.Contains(pipelines, name) {
			t.Errorf("Deployment for unknown pipeline %q", name)
		}
	}
}

func TestK8sPodsAreProbedHardenedAndSized(t *testing.T) {
	t.Parallel()
	ms := loadManifests(t)
	deployments := objectsOf[*appsv1.Deployment](ms)
	if len(deployments) != 1+len(pipelines) {
		t.Errorf("%d Deployments, want capture + %d pipelines", len(deployments), len(pipelines))
	}
	for _, d := range deployments {
		pod := d.Spec.Template.Spec
		if !selects(t, d.Spec.Selector, d.Spec.Template.Labels) {
			t.Errorf("%s: selector %v does not match its pod labels %v", d.Name, d.Spec.Selector, d.Spec.Template.Labels)
		}
		sc := pod.SecurityContext
		if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser != imageUID ||
			sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: pod securityContext must be runAsNonRoot, runAsUser %d (the image's), seccomp RuntimeDefault: %+v", d.Name, imageUID, sc)
		}
		if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
			t.Errorf("%s: mounts a service-account token it never uses", d.Name)
		}
		if len(pod.Containers) != 1 {
			t.Errorf("%s: %d containers, want 1", d.Name, len(pod.Containers))
			continue
		}
		c := pod.Containers[0]
		checkContainer(t, d.Name, c)
		checkVolumes(t, d.Name, pod, c)
	}
}

func checkContainer(t *testing.T, where string, c corev1.Container) {
	t.Helper()
	port := func(p intstr.IntOrString) int32 {
		if p.Type == intstr.Int {
			return p.IntVal
		}
		for _, cp := range c.Ports {
			if cp.Name == p.StrVal {
				return cp.ContainerPort
			}
		}
		t.Errorf("%s: probe port %q is not a container port", where, p.StrVal)
		return 0
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}, {"startup", c.StartupProbe, "/healthz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s: no HTTP %s probe", where, p.name)
			continue
		}
		if p.probe.HTTPGet.Path != p.path || port(p.probe.HTTPGet.Port) != 8080 {
			t.Errorf("%s: %s probe %s:%v, want %s on 8080", where, p.name, p.probe.HTTPGet.Path, p.probe.HTTPGet.Port.String(), p.path)
		}
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 ||
		(sc.RunAsUser != nil && *sc.RunAsUser == 0) || (sc.Privileged != nil && *sc.Privileged) {
		t.Errorf("%s: container securityContext must be read-only root, no privilege escalation, drop ALL: %+v", where, sc)
	}
	req, lim := c.Resources.Requests, c.Resources.Limits
	if req.Cpu().IsZero() || req.Memory().IsZero() || lim.Memory().IsZero() {
		t.Errorf("%s: wants cpu and memory requests and a memory limit: %+v", where, c.Resources)
	} else if req.Memory().Cmp(*lim.Memory()) > 0 {
		t.Errorf("%s: memory request above its limit", where)
	}
	if strings.HasSuffix(c.Image, ":latest") || !strings.Contains(c.Image, ":") {
		t.Errorf("%s: image %q is not pinned", where, c.Image)
	}
	if !slices.Contains(c.Args, "--config="+configPath) {
		t.Errorf("%s: args %v do not pass --config=%s", where, c.Args, configPath)
	}
	// The runtime's soft memory limit comes from the container's (cmd/starstream/memlimit.go):
	// without it the garbage collector lets the heap grow past the limit and the pod is killed.
	memoryLimit := false
	for _, e := range c.Env {
		if e.Name == "STARSTREAM_MEMORY_LIMIT" && e.ValueFrom != nil && e.ValueFrom.ResourceFieldRef != nil &&
			e.ValueFrom.ResourceFieldRef.Resource == "limits.memory" {
			memoryLimit = true
		}
	}
	if !memoryLimit {
		t.Errorf("%s: does not pass limits.memory as STARSTREAM_MEMORY_LIMIT (Downward API resourceFieldRef)", where)
	}
	for _, e := range c.Env {
		checkEnvName(t, where, e.Name)
		if secretName.MatchString(e.Name) && e.Value != "" && !strings.HasSuffix(e.Name, "_FILE") {
			t.Errorf("%s: %s written inline; use a file from a Secret", where, e.Name)
		}
	}
}

// checkVolumes: every mount has a volume, the config mount serves --config, /tmp is
// writable (the root filesystem is not), and Secrets are mounted where the config
// expects their files.
func checkVolumes(t *testing.T, where string, pod corev1.PodSpec, c corev1.Container) {
	t.Helper()
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	mounted := map[string]corev1.Volume{}
	for _, m := range c.VolumeMounts {
		v, ok := volumes[m.Name]
		if !ok {
			t.Errorf("%s: mount %s has no volume", where, m.Name)
			continue
		}
		mounted[m.MountPath] = v
		if (v.ConfigMap != nil || v.Secret != nil) && !m.ReadOnly {
			t.Errorf("%s: %s is mounted read-write", where, m.Name)
		}
	}
	if v, ok := mounted[path.Dir(configPath)]; !ok || v.ConfigMap == nil || v.ConfigMap.Name != "starstream-config" {
		t.Errorf("%s: %s is not the starstream-config ConfigMap", where, path.Dir(configPath))
	}
	if v, ok := mounted["/tmp"]; !ok || v.EmptyDir == nil {
		t.Errorf("%s: /tmp must be an emptyDir (read-only root filesystem)", where)
	}
	for _, v := range pod.Volumes {
		if v.Secret != nil && (v.Secret.DefaultMode == nil || *v.Secret.DefaultMode&0o007 != 0) {
			t.Errorf("%s: Secret volume %s is readable by others", where, v.Name)
		}
	}
}

func TestK8sServiceMonitorScrapesEveryPod(t *testing.T) {
	t.Parallel()
	ms := loadManifests(t)
	sms := objectsOf[*serviceMonitor](ms)
	if len(sms) != 1 {
		t.Fatalf("%d ServiceMonitors, want 1", len(sms))
	}
	sm := sms[0]
	var svc *corev1.Service
	for _, s := range objectsOf[*corev1.Service](ms) {
		if selects(t, &sm.Spec.Selector, s.Labels) {
			if svc != nil {
				t.Errorf("ServiceMonitor selects Services %s and %s", svc.Name, s.Name)
			}
			svc = s
		}
	}
	if svc == nil {
		t.Fatal("the ServiceMonitor selects no Service")
	}
	if ns := sm.Spec.NamespaceSelector; ns == nil || !(ns.Any || slices.Contains(ns.MatchNames, namespace)) {
		t.Errorf("namespaceSelector %+v does not cover %s", ns, namespace)
	}
	if len(sm.Spec.Endpoints) == 0 {
		t.Fatal("ServiceMonitor has no endpoints")
	}
	for _, ep := range sm.Spec.Endpoints {
		if ep.Path != "/metrics" {
			t.Errorf("endpoint path %q, want /metrics", ep.Path)
		}
		var sp *corev1.ServicePort
		for i := range svc.Spec.Ports {
			if svc.Spec.Ports[i].Name == ep.Port {
				sp = &svc.Spec.Ports[i]
			}
		}
		if sp == nil {
			t.Errorf("endpoint port %q is not a port of Service %s", ep.Port, svc.Name)
			continue
		}
		for _, d := range objectsOf[*appsv1.Deployment](ms) {
			if !selects(t, &metav1.LabelSelector{MatchLabels: svc.Spec.Selector}, d.Spec.Template.Labels) {
				t.Errorf("Service %s does not select the pods of %s: they would not be scraped", svc.Name, d.Name)
				continue
			}
			if !slices.ContainsFunc(d.Spec.Template.Spec.Containers[0].Ports, func(p corev1.ContainerPort) bool {
				return p.Name == sp.TargetPort.StrVal || p.ContainerPort == sp.TargetPort.IntVal
			}) {
				t.Errorf("Service targetPort %s is not a port of %s", sp.TargetPort.String(), d.Name)
			}
		}
	}
	if !svc.Spec.PublishNotReadyAddresses {
		t.Error("the metrics Service must publish not-ready pods: an unready pod is the one worth scraping")
	}
}

func TestK8sPrometheusRuleMatchesAlertsFile(t *testing.T) {
	t.Parallel()
	rules := objectsOf[*prometheusRule](loadManifests(t))
	if len(rules) != 1 {
		t.Fatalf("%d PrometheusRules, want 1", len(rules))
	}
	var file struct {
		Groups []ruleGroup `json:"groups"`
	}
	if err := decodeStrict(readFile(t, "deploy/prometheus/alerts.yml"), &file); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	a, _ := yaml.Marshal(file.Groups)
	b, _ := yaml.Marshal(rules[0].Spec.Groups)
	if string(a) != string(b) {
		t.Errorf("deploy/k8s/prometheusrule.yaml differs from deploy/prometheus/alerts.yml: copy the groups over\nalerts.yml:\n%s\nprometheusrule.yaml:\n%s", a, b)
	}
}
