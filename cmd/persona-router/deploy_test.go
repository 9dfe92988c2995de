package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/persona-router/persona-router/internal/service"
)

// The manifests under deploy/ run this program, so they are checked against it: the files they
// reference exist, the flags they pass are flags of `serve`, the environment variables they set
// are documented, and the fleet's pieces (probes, replicas, disruption budget, load balancer) fit
// together. No cluster and no Docker engine are needed.

const (
	repoRoot   = "../.."
	deployRoot = "../../deploy"
	// routerName names the persona-router Deployment, Service, PodDisruptionBudget and container.
	routerName = "persona-router"
)

// deployDocs parses every YAML file under deploy/, all documents of each, and returns them by
// path relative to the repository's root.
func deployDocs(t *testing.T) map[string][]*yaml.Node {
	t.Helper()
	docs := map[string][]*yaml.Node{}
	err := filepath.WalkDir(deployRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || (filepath.Ext(path) != ".yaml" && filepath.Ext(path) != ".yml") {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repoRoot, path)
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var doc yaml.Node
			if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return fmt.Errorf("parsing %s: %w", rel, err)
			}
			docs[rel] = append(docs[rel], &doc)
		}
		if len(docs[rel]) == 0 {
			return fmt.Errorf("%s holds no YAML document", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"deploy/compose.yaml", "deploy/kubernetes/kustomization.yaml"} {
		if docs[want] == nil {
			t.Fatalf("%s is missing", want)
		}
	}
	return docs
}

type kustomization struct {
	Resources          []string `yaml:"resources"`
	ConfigMapGenerator []struct {
		Name    string   `yaml:"name"`
		Files   []string `yaml:"files"`
		Options struct {
			DisableNameSuffixHash bool `yaml:"disableNameSuffixHash"`
		} `yaml:"options"`
	} `yaml:"configMapGenerator"`
	GeneratorOptions struct {
		DisableNameSuffixHash bool `yaml:"disableNameSuffixHash"`
	} `yaml:"generatorOptions"`
}

type objectMeta struct {
	Name   string            `yaml:"name"`
	Labels map[string]string `yaml:"labels"`
}

type labelSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

type envVar struct {
	Name      string `yaml:"name"`
	Value     string `yaml:"value"`
	ValueFrom *struct {
		SecretKeyRef *struct {
			Name string `yaml:"name"`
			Key  string `yaml:"key"`
		} `yaml:"secretKeyRef"`
	} `yaml:"valueFrom"`
}

type container struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Env     []envVar `yaml:"env"`
	Ports   []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	Lifecycle      struct {
		PreStop *struct {
			Sleep *struct {
				Seconds int `yaml:"seconds"`
			} `yaml:"sleep"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		RunAsNonRoot           *bool `yaml:"runAsNonRoot"`
		ReadOnlyRootFilesystem *bool `yaml:"readOnlyRootFilesystem"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
	} `yaml:"volumeMounts"`
}

type deployment struct {
	Metadata objectMeta `yaml:"metadata"`
	Spec     struct {
		Replicas *int          `yaml:"replicas"`
		Selector labelSelector `yaml:"selector"`
		Template struct {
			Metadata objectMeta `yaml:"metadata"`
			Spec     struct {
				TerminationGracePeriodSeconds *int `yaml:"terminationGracePeriodSeconds"`
				SecurityContext               struct {
					RunAsNonRoot *bool `yaml:"runAsNonRoot"`
				} `yaml:"securityContext"`
				Containers []container `yaml:"containers"`
				Volumes    []struct {
					Name      string `yaml:"name"`
					ConfigMap *struct {
						Name string `yaml:"name"`
					} `yaml:"configMap"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type kubeService struct {
	Metadata objectMeta `yaml:"metadata"`
	Spec     struct {
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			Port       int `yaml:"port"`
			TargetPort any `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type disruptionBudget struct {
	Metadata objectMeta `yaml:"metadata"`
	Spec     struct {
		MinAvailable any           `yaml:"minAvailable"`
		Selector     labelSelector `yaml:"selector"`
	} `yaml:"spec"`
}

// cluster is what the kustomization deploys, read from the files it lists.
type cluster struct {
	kustomization kustomization
	deployments   map[string]deployment
	services      map[string]kubeService
	budgets       map[string]disruptionBudget
	kinds         map[string][]string // kind → "file: name"
}

func decodeNode(t *testing.T, where string, n *yaml.Node, v any) {
	t.Helper()
	if err := n.Decode(v); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
}

// loadCluster reads the kustomization and every object of the files it lists as resources.
func loadCluster(t *testing.T, docs map[string][]*yaml.Node) cluster {
	t.Helper()
	c := cluster{
		deployments: map[string]deployment{},
		services:    map[string]kubeService{},
		budgets:     map[string]disruptionBudget{},
		kinds:       map[string][]string{},
	}
	decodeNode(t, "deploy/kubernetes/kustomization.yaml", docs["deploy/kubernetes/kustomization.yaml"][0], &c.kustomization)
	for _, res := range c.kustomization.Resources {
		rel := filepath.ToSlash(filepath.Join("deploy/kubernetes", res))
		for i, n := range docs[rel] {
			where := fmt.Sprintf("%s (document %d)", rel, i+1)
			var head struct {
				Kind     string     `yaml:"kind"`
				Metadata objectMeta `yaml:"metadata"`
			}
			decodeNode(t, where, n, &head)
			c.kinds[head.Kind] = append(c.kinds[head.Kind], rel+": "+head.Metadata.Name)
			switch head.Kind {
			case "Deployment":
				var d deployment
				decodeNode(t, where, n, &d)
				c.deployments[head.Metadata.Name] = d
			case "Service":
				var s kubeService
				decodeNode(t, where, n, &s)
				c.services[head.Metadata.Name] = s
			case "PodDisruptionBudget":
				var b disruptionBudget
				decodeNode(t, where, n, &b)
				c.budgets[head.Metadata.Name] = b
			}
		}
	}
	return c
}

// generatedFile splits a configMapGenerator files entry, "path" or "key=path", into its key and
// its path relative to the repository's root.
func generatedFile(entry string) (key, path string) {
	key, p, ok := strings.Cut(entry, "=")
	if !ok {
		p = entry
		key = filepath.Base(p)
	}
	return key, filepath.ToSlash(filepath.Clean(filepath.Join("deploy/kubernetes", p)))
}

// configDirs are the repository's configuration directories and the ConfigMap each becomes.
var configDirs = []struct{ dir, configMap, env string }{
	{"rules", "persona-router-rules", "RULES_DIR"},
	{"personas", "persona-router-personas", "PERSONAS_DIR"},
}

func TestDeployKustomizationReferencesExist(t *testing.T) {
	t.Parallel()
	docs := deployDocs(t)
	c := loadCluster(t, docs)
	k := c.kustomization

	listed := map[string]bool{}
	for _, res := range k.Resources {
		rel := filepath.ToSlash(filepath.Join("deploy/kubernetes", res))
		listed[rel] = true
		if _, err := os.Stat(filepath.Join(repoRoot, rel)); err != nil {
			t.Errorf("kustomization.yaml lists resource %s, which does not exist", res)
		}
	}
	// A manifest left out of resources would silently not be deployed.
	for rel := range docs {
		if strings.HasPrefix(rel, "deploy/kubernetes/") && rel != "deploy/kubernetes/kustomization.yaml" && !listed[rel] {
			t.Errorf("%s is not listed in kustomization.yaml's resources, so it is never deployed", rel)
		}
	}

	generated := map[string][]string{} // ConfigMap → files, relative to the repository's root
	for _, g := range k.ConfigMapGenerator {
		if !g.Options.DisableNameSuffixHash && !k.GeneratorOptions.DisableNameSuffixHash {
			t.Errorf("configMapGenerator %s lacks disableNameSuffixHash: true; every edit would roll the pods instead of hot-reloading the mounted ConfigMap", g.Name)
		}
		keys := map[string]bool{}
		for _, entry := range g.Files {
			key, path := generatedFile(entry)
			if keys[key] {
				t.Errorf("configMapGenerator %s has two files with the key %s", g.Name, key)
			}
			keys[key] = true
			if _, err := os.Stat(filepath.Join(repoRoot, path)); err != nil {
				t.Errorf("configMapGenerator %s lists %s, which does not exist (%s from the repository's root)", g.Name, entry, path)
			}
			generated[g.Name] = append(generated[g.Name], path)
		}
	}
	for _, cd := range configDirs {
		var want []string
		for _, pattern := range []string{"*.yaml", "*.yml"} {
			matches, err := filepath.Glob(filepath.Join(repoRoot, cd.dir, pattern))
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range matches {
				want = append(want, cd.dir+"/"+filepath.Base(m))
			}
		}
		if len(want) == 0 {
			t.Fatalf("no %s/*.yaml in the repository", cd.dir)
		}
		got := generated[cd.configMap]
		for _, f := range want {
			if !slices.Contains(got, f) {
				t.Errorf("%s is not in configMapGenerator %s of deploy/kubernetes/kustomization.yaml: the cluster would run without it (add ../../%s to its files)", f, cd.configMap, f)
			}
		}
		for _, f := range got {
			if !slices.Contains(want, f) {
				t.Errorf("configMapGenerator %s lists %s, which is not a %s/*.yaml file of the repository", cd.configMap, f, cd.dir)
			}
		}
	}

	// The Secret holds the API key: it is created by hand, never committed.
	if s := c.kinds["Secret"]; len(s) > 0 {
		t.Errorf("deploy/ holds a Secret (%v); secrets must not be in the repository", s)
	}
}

// routerContainer returns the persona-router Deployment and its container.
func routerContainer(t *testing.T, c cluster) (deployment, container) {
	t.Helper()
	d, ok := c.deployments[routerName]
	if !ok {
		t.Fatalf("the kustomization has no Deployment %s (it has %v)", routerName, c.kinds["Deployment"])
	}
	for _, ctr := range d.Spec.Template.Spec.Containers {
		if ctr.Name == routerName {
			return d, ctr
		}
	}
	t.Fatalf("Deployment %s has no container %s", routerName, routerName)
	return d, container{}
}

// subset tells whether every label of sel is in labels; an empty selector selects nothing here.
func subset(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// flagValue returns the value of --name in args, given as --name=value or --name value.
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if !strings.HasPrefix(a, "-") {
			continue
		}
		a = "-" + strings.TrimLeft(a, "-")
		if v, ok := strings.CutPrefix(a, "-"+name+"="); ok {
			return v, true
		}
		if a == "-"+name && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

func TestDeployKubernetesFleet(t *testing.T) {
	t.Parallel()
	c := loadCluster(t, deployDocs(t))
	d, ctr := routerContainer(t, c)
	pod := d.Spec.Template.Spec
	podLabels := d.Spec.Template.Metadata.Labels

	if r := d.Spec.Replicas; r == nil || *r != 3 {
		t.Errorf("Deployment %s: replicas is %s, want 3", routerName, intString(r))
	}
	if !subset(d.Spec.Selector.MatchLabels, podLabels) {
		t.Errorf("Deployment %s: selector %v does not match its pod labels %v", routerName, d.Spec.Selector.MatchLabels, podLabels)
	}
	if !strings.HasPrefix(ctr.Image, routerName) {
		t.Errorf("container image is %q, want the image the repository's Dockerfile builds (%s, set by the kustomization's images)", ctr.Image, routerName)
	}

	// Probes, on the port the service listens on.
	port := func(p any) int {
		switch p := p.(type) {
		case int:
			return p
		case string:
			for _, cp := range ctr.Ports {
				if cp.Name == p {
					return cp.ContainerPort
				}
			}
		}
		return 0
	}
	for _, pr := range []struct {
		name, path string
		probe      *probe
	}{
		{"readinessProbe", "/readyz", ctr.ReadinessProbe},
		{"livenessProbe", "/healthz", ctr.LivenessProbe},
	} {
		switch {
		case pr.probe == nil || pr.probe.HTTPGet == nil:
			t.Errorf("container %s has no httpGet %s", routerName, pr.name)
		case pr.probe.HTTPGet.Path != pr.path:
			t.Errorf("%s path is %q, want %s", pr.name, pr.probe.HTTPGet.Path, pr.path)
		case port(pr.probe.HTTPGet.Port) != 8080:
			t.Errorf("%s port %v is not 8080", pr.name, pr.probe.HTTPGet.Port)
		}
	}

	// Non-root, read-only, with resources.
	nonRoot := pod.SecurityContext.RunAsNonRoot
	if ctr.SecurityContext.RunAsNonRoot != nil {
		nonRoot = ctr.SecurityContext.RunAsNonRoot
	}
	if nonRoot == nil || !*nonRoot {
		t.Error("the persona-router pod does not set runAsNonRoot: true")
	}
	if ro := ctr.SecurityContext.ReadOnlyRootFilesystem; ro == nil || !*ro {
		t.Error("the persona-router container does not set readOnlyRootFilesystem: true")
	}
	for _, r := range []string{"cpu", "memory"} {
		if ctr.Resources.Requests[r] == "" {
			t.Errorf("the persona-router container has no %s request", r)
		}
	}
	if memory, ok := ctr.Resources.Limits["memory"]; !ok || memory == "" {
		t.Error("the persona-router container has no memory limit")
	}

	// The kubelet waits for the preStop hook, the shutdown delay and grace, and the drain
	// before SIGKILL.
	duration := func(name string, dflt time.Duration) time.Duration {
		v, ok := flagValue(ctr.Args, name)
		if !ok {
			return dflt
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("--%s=%s: %v", name, v, err)
		}
		return d
	}
	grace, delay := duration("shutdown-grace", 15*time.Second), duration("shutdown-delay", 0)
	var preStop time.Duration
	if ps := ctr.Lifecycle.PreStop; ps == nil || ps.Sleep == nil || ps.Sleep.Seconds <= 0 {
		t.Error("the persona-router container has no preStop sleep: the pod would stop accepting connections before the Service stops sending them")
	} else {
		preStop = time.Duration(ps.Sleep.Seconds) * time.Second
	}
	need := preStop + delay + grace + service.ShutdownDrain
	if tg := pod.TerminationGracePeriodSeconds; tg == nil || time.Duration(*tg)*time.Second < need {
		t.Errorf("terminationGracePeriodSeconds is %s; the kubelet would kill requests still finishing: want at least %s (preStop %s + --shutdown-delay %s + --shutdown-grace %s + drain %s)",
			intString(tg), need, preStop, delay, grace, service.ShutdownDrain)
	}

	// Secrets by secretKeyRef, never by value.
	env := map[string]envVar{}
	for _, e := range ctr.Env {
		env[e.Name] = e
	}
	for _, name := range []string{"ANAM_API_KEY", "TOOL_SIGNING_SECRET", "ADMIN_TOKEN"} {
		if e, ok := env[name]; !ok || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.Value != "" {
			t.Errorf("env %s must come from a Secret (valueFrom.secretKeyRef)", name)
		}
	}

	// REDIS_URL points at a Service of the kustomization.
	if u, err := url.Parse(env["REDIS_URL"].Value); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
		t.Errorf("env REDIS_URL is %q, want a redis:// or rediss:// URL", env["REDIS_URL"].Value)
	} else if _, ok := c.services[u.Hostname()]; !ok {
		t.Errorf("REDIS_URL names host %q, which is not a Service of the kustomization (%v)", u.Hostname(), c.kinds["Service"])
	}

	// RULES_DIR and PERSONAS_DIR are the mounted ConfigMaps, mounted whole.
	volumeOf := map[string]string{} // volume → ConfigMap
	for _, v := range pod.Volumes {
		if v.ConfigMap != nil {
			volumeOf[v.Name] = v.ConfigMap.Name
		}
	}
	for _, cd := range configDirs {
		dir := env[cd.env].Value
		if dir == "" {
			t.Errorf("env %s is not set", cd.env)
			continue
		}
		mounted := false
		for _, m := range ctr.VolumeMounts {
			if m.MountPath == dir && volumeOf[m.Name] == cd.configMap {
				mounted = true
				if m.SubPath != "" {
					t.Errorf("%s is a subPath mount; the kubelet does not update those", dir)
				}
			}
		}
		if !mounted {
			t.Errorf("%s=%s is not where ConfigMap %s is mounted", cd.env, dir, cd.configMap)
		}
	}

	// The Service and the PodDisruptionBudget select these pods, and only these.
	others := map[string]map[string]string{}
	for name, od := range c.deployments {
		if name != routerName {
			others[name] = od.Spec.Template.Metadata.Labels
		}
	}
	selects := func(what string, sel map[string]string) {
		if !subset(sel, podLabels) {
			t.Errorf("%s selector %v does not match the labels %v of Deployment %s's pods", what, sel, podLabels, routerName)
		}
		for name, labels := range others {
			if subset(sel, labels) {
				t.Errorf("%s selector %v also matches Deployment %s's pods", what, sel, name)
			}
		}
	}
	pdb, ok := c.budgets[routerName]
	if !ok {
		t.Fatalf("the kustomization has no PodDisruptionBudget %s", routerName)
	}
	if pdb.Spec.MinAvailable != 2 {
		t.Errorf("PodDisruptionBudget minAvailable is %v, want 2", pdb.Spec.MinAvailable)
	}
	selects("PodDisruptionBudget "+routerName, pdb.Spec.Selector.MatchLabels)
	svc, ok := c.services[routerName]
	if !ok {
		t.Fatalf("the kustomization has no Service %s", routerName)
	}
	selects("Service "+routerName, svc.Spec.Selector)
	for _, p := range svc.Spec.Ports {
		if port(p.TargetPort) != 8080 {
			t.Errorf("Service %s targetPort %v is not the container's port 8080", routerName, p.TargetPort)
		}
	}
}

type composeService struct {
	Build *struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	} `yaml:"build"`
	Image       string    `yaml:"image"`
	Command     []string  `yaml:"command"`
	Entrypoint  []string  `yaml:"entrypoint"`
	Environment yaml.Node `yaml:"environment"`
	Volumes     []string  `yaml:"volumes"`
	DependsOn   yaml.Node `yaml:"depends_on"`
	Ports       []string  `yaml:"ports"`
}

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
}

func loadCompose(t *testing.T, docs map[string][]*yaml.Node) composeFile {
	t.Helper()
	var cf composeFile
	decodeNode(t, "deploy/compose.yaml", docs["deploy/compose.yaml"][0], &cf)
	return cf
}

// routerServices are the compose services built from the repository's Dockerfile.
func routerServices(cf composeFile) []string {
	var names []string
	for name, s := range cf.Services {
		if s.Build != nil {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// envNames returns the names a compose environment sets, given as a map or as a KEY=value list.
func envNames(n yaml.Node) []string {
	var names []string
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i < len(n.Content); i += 2 {
			names = append(names, n.Content[i].Value)
		}
	case yaml.SequenceNode:
		for _, item := range n.Content {
			name, _, _ := strings.Cut(item.Value, "=")
			names = append(names, name)
		}
	}
	return names
}

// nodeStrings returns the service names of a depends_on, given as a list or a map.
func nodeStrings(n yaml.Node) []string {
	var out []string
	switch n.Kind {
	case yaml.SequenceNode:
		for _, item := range n.Content {
			out = append(out, item.Value)
		}
	case yaml.MappingNode:
		for i := 0; i < len(n.Content); i += 2 {
			out = append(out, n.Content[i].Value)
		}
	}
	return out
}

var upstreamServer = regexp.MustCompile(`(?m)^\s*server\s+([A-Za-z0-9._-]+):(\d+)\b`)

func TestDeployComposeFleet(t *testing.T) {
	t.Parallel()
	cf := loadCompose(t, deployDocs(t))
	routers := routerServices(cf)
	if len(routers) < 2 {
		t.Fatalf("compose.yaml builds %d persona-router services (%v), want 2 replicas", len(routers), routers)
	}
	for _, name := range routers {
		s := cf.Services[name]
		dockerfile := filepath.Join(deployRoot, s.Build.Context, cmp.Or(s.Build.Dockerfile, "Dockerfile"))
		if abs, _ := filepath.Abs(dockerfile); abs != mustAbs(t, filepath.Join(repoRoot, "Dockerfile")) {
			t.Errorf("service %s builds %s, want the repository's Dockerfile", name, dockerfile)
		}
		mounts := map[string]bool{}
		for _, v := range s.Volumes {
			parts := strings.Split(v, ":")
			if len(parts) < 2 {
				continue
			}
			src := filepath.Join(deployRoot, parts[0])
			if _, err := os.Stat(src); err != nil {
				t.Errorf("service %s mounts %s, which does not exist", name, parts[0])
			}
			if len(parts) < 3 || !strings.Contains(parts[2], "ro") {
				t.Errorf("service %s mounts %s read-write; mount the configuration read-only", name, parts[0])
			}
			mounts[mustAbs(t, src)+" "+parts[1]] = true
		}
		for _, cd := range configDirs {
			if !mounts[mustAbs(t, filepath.Join(repoRoot, cd.dir))+" /etc/persona-router/"+cd.dir] {
				t.Errorf("service %s does not mount the repository's %s/ at /etc/persona-router/%s (where the image's %s points)", name, cd.dir, cd.dir, cd.env)
			}
		}
		deps := nodeStrings(s.DependsOn)
		for _, dep := range deps {
			if _, ok := cf.Services[dep]; !ok {
				t.Errorf("service %s depends on %s, which is not a service", name, dep)
			}
		}
		redis, ok := flagValue(s.Command, "redis-url")
		if !ok {
			for _, e := range envNames(s.Environment) {
				if e == "REDIS_URL" {
					ok = true
				}
			}
		}
		if !ok {
			t.Errorf("service %s sets neither --redis-url nor REDIS_URL: its limits would not be shared", name)
		} else if u, err := url.Parse(redis); redis != "" && (err != nil || cf.Services[u.Hostname()].Image == "") {
			t.Errorf("service %s: --redis-url=%s does not name a service of compose.yaml", name, redis)
		}
	}

	// The load balancer: a service mounting an nginx or haproxy config that names every replica.
	var lb string
	var conf []byte
	for name, s := range cf.Services {
		for _, v := range s.Volumes {
			src, dst, _ := strings.Cut(v, ":")
			if strings.Contains(dst, "nginx") || strings.Contains(dst, "haproxy") {
				data, err := os.ReadFile(filepath.Join(deployRoot, src))
				if err != nil {
					t.Fatalf("service %s mounts %s: %v", name, src, err)
				}
				lb, conf = name, data
			}
		}
	}
	if lb == "" {
		t.Fatal("compose.yaml has no load balancer: no service mounts an nginx or haproxy configuration from deploy/")
	}
	if len(cf.Services[lb].Ports) == 0 {
		t.Errorf("the load balancer %s publishes no port", lb)
	}
	var upstream []string
	for _, m := range upstreamServer.FindAllStringSubmatch(string(conf), -1) {
		upstream = append(upstream, m[1])
		if m[2] != "8080" {
			t.Errorf("the load balancer sends to %s:%s; the replicas listen on 8080", m[1], m[2])
		}
		if _, ok := cf.Services[m[1]]; !ok {
			t.Errorf("the load balancer sends to %s, which is not a service of compose.yaml", m[1])
		}
	}
	slices.Sort(upstream)
	if !slices.Equal(upstream, routers) {
		t.Errorf("the load balancer's upstream servers are %v, want the replicas %v", upstream, routers)
	}
	if _, ok := cf.Services["redis"]; !ok {
		t.Error("compose.yaml has no redis service")
	}
}

// intString shows an optional integer of a manifest.
func intString(p *int) string {
	if p == nil {
		return "not set"
	}
	return fmt.Sprint(*p)
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// routerCommand is what one persona-router container of deploy/ is started with.
type routerCommand struct {
	where string
	args  []string
	env   []string
}

func routerCommands(t *testing.T) []routerCommand {
	t.Helper()
	docs := deployDocs(t)
	_, ctr := routerContainer(t, loadCluster(t, docs))
	var env []string
	for _, e := range ctr.Env {
		env = append(env, e.Name)
	}
	cmds := []routerCommand{{"deploy/kubernetes Deployment " + routerName, append(ctr.Command, ctr.Args...), env}}
	cf := loadCompose(t, docs)
	for _, name := range routerServices(cf) {
		s := cf.Services[name]
		cmds = append(cmds, routerCommand{"deploy/compose.yaml service " + name, append(s.Entrypoint, s.Command...), envNames(s.Environment)})
	}
	return cmds
}

var helpFlag = regexp.MustCompile(`(?m)^  -([A-Za-z0-9][A-Za-z0-9-]*)`)

// serveFlags returns the flags `persona-router serve -h` lists.
func serveFlags(t *testing.T) map[string]bool {
	t.Helper()
	var stdout, stderr bytes.Buffer
	_ = run(context.Background(), []string{"persona-router", "serve", "-h"}, func(string) string { return "" }, &stdout, &stderr)
	flags := map[string]bool{}
	for _, m := range helpFlag.FindAllStringSubmatch(stdout.String()+stderr.String(), -1) {
		flags[m[1]] = true
	}
	if !flags["addr"] {
		t.Fatalf("could not read the flags of `persona-router serve -h`:\n%s%s", stdout.String(), stderr.String())
	}
	return flags
}

func TestDeployFlagsExist(t *testing.T) {
	t.Parallel()
	flags := serveFlags(t)
	for _, rc := range routerCommands(t) {
		for _, a := range rc.args {
			if !strings.HasPrefix(a, "-") {
				continue
			}
			name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
			if !flags[name] {
				t.Errorf("%s passes --%s, which `persona-router serve -h` does not list (flags: %s)", rc.where, name, strings.Join(slices.Sorted(maps.Keys(flags)), " "))
			}
		}
	}
}

// documentedEnv returns the environment variables the flag/env table of docs/cli.md (under
// "serve") names.
func documentedEnv(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	name := regexp.MustCompile("`([A-Z][A-Z0-9_]*)`")
	for _, line := range strings.Split(serveSection(t), "\n") {
		if !strings.HasPrefix(line, "|") {
			continue
		}
		for _, m := range name.FindAllStringSubmatch(line, -1) {
			names[m[1]] = true
		}
	}
	if !names["ADDR"] || !names["ANAM_API_KEY"] {
		t.Fatalf("could not read the flag/env table of docs/cli.md's serve section (found %v)", names)
	}
	return names
}

func TestDeployEnvDocumented(t *testing.T) {
	t.Parallel()
	documented := documentedEnv(t)
	for _, rc := range routerCommands(t) {
		for _, name := range rc.env {
			if !documented[name] {
				t.Errorf("%s sets env %s, which the flag/env table of docs/cli.md (serve) does not document", rc.where, name)
			}
		}
	}
}
