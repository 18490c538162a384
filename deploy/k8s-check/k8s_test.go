package k8scheck

import (
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/acme/usersd/config"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The repository's root, seen from deploy/k8s-check.
const root = "../.."

var rendered = sync.OnceValues(func() ([]byte, error) { return Render(filepath.Join(root, "deploy", "k8s")) })

// setup renders deploy/k8s once and decodes a fresh copy for each caller,
// which may change it; it also returns the variables usersd reads.
func setup(t *testing.T) (*Manifests, []string) {
	t.Helper()
	out, err := rendered()
	if err != nil {
		t.Fatal(err)
	}
	m, err := Decode(out)
	if err != nil {
		t.Fatalf("decoding the rendered manifests strictly:\n%v", err)
	}
	return m, variables(t)
}

// variables are the variables usersd reads: package config's definition,
// which cmd/usersd's own tests hold its reads to.
func variables(t *testing.T) []string {
	t.Helper()
	vars := config.Names()
	if len(vars) < 20 {
		t.Fatalf("package config defines only %d variables (%v)", len(vars), vars)
	}
	return vars
}

// TestManifests is the check: the rendered base keeps every rule of
// docs/deployment.md's Kubernetes section.
func TestManifests(t *testing.T) {
	t.Parallel()
	m, vars := setup(t)
	for _, problem := range Check(m, vars) {
		t.Error(problem)
	}
	t.Logf("%d variables checked: %s", len(vars), strings.Join(vars, " "))
}

// TestBrokenManifestsFail proves that the check catches each kind of
// mistake: every case breaks one rule of a fresh copy of the rendered base.
func TestBrokenManifestsFail(t *testing.T) {
	t.Parallel()
	deploy := func(m *Manifests) *corev1.PodSpec { return &m.Deployments["usersd"].Spec.Template.Spec }
	ctr := func(m *Manifests) *corev1.Container { return &deploy(m).Containers[0] }
	config := func(m *Manifests) map[string]string {
		for name, cm := range m.ConfigMaps {
			if strings.HasPrefix(name, "usersd-config") {
				return cm.Data
			}
		}
		t.Fatal("no ConfigMap usersd-config")
		return nil
	}
	job := func(m *Manifests) *corev1.Container {
		return &m.Jobs["usersd-migrate"].Spec.Template.Spec.Containers[0]
	}
	ptr := func(b bool) *bool { return &b }

	cases := []struct {
		name   string
		mutate func(m *Manifests, vars *[]string)
		want   string
	}{
		{"two replicas", func(m *Manifests, _ *[]string) { n := int32(2); m.Deployments["usersd"].Spec.Replicas = &n }, "replicas"},
		{"maxUnavailable 1", func(m *Manifests, _ *[]string) {
			v := intstr.FromInt32(1)
			m.Deployments["usersd"].Spec.Strategy.RollingUpdate.MaxUnavailable = &v
		}, "maxUnavailable"},
		{"readiness on /healthz", func(m *Manifests, _ *[]string) {
			pr := ctr(m).ReadinessProbe
			pr.GRPC, pr.HTTPGet = nil, &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8000)}
		}, "readinessProbe must be a grpc"},
		{"startup probe on another port", func(m *Manifests, _ *[]string) { ctr(m).StartupProbe.GRPC.Port = 9000 }, "startupProbe probes port 9000"},
		{"BIND moved", func(m *Manifests, _ *[]string) { config(m)["BIND"] = ":9000" }, "listens on 9000"},
		{"liveness on /healthz", func(m *Manifests, _ *[]string) { ctr(m).LivenessProbe.HTTPGet.Path = "/healthz" }, "/livez"},
		{"no preStop", func(m *Manifests, _ *[]string) { ctr(m).Lifecycle = nil }, "preStop"},
		{"grace period too short", func(m *Manifests, _ *[]string) { g := int64(30); deploy(m).TerminationGracePeriodSeconds = &g }, "terminationGracePeriodSeconds"},
		{"longer requests, same grace", func(m *Manifests, _ *[]string) {
			config(m)["REQUEST_TIMEOUT"] = "60s"
			config(m)["SHUTDOWN_TIMEOUT"] = "80s"
		}, "terminationGracePeriodSeconds"},
		{"no River soft stop", func(m *Manifests, _ *[]string) { config(m)["SHUTDOWN_TIMEOUT"] = "20s" }, "leaves River no soft stop"},
		{"no drain", func(m *Manifests, _ *[]string) { delete(config(m), "SHUTDOWN_DRAIN") }, "SHUTDOWN_DRAIN"},
		{"GOMEMLIMIT at the limit", func(m *Manifests, _ *[]string) {
			for i, e := range ctr(m).Env {
				if e.Name == "GOMEMLIMIT" {
					ctr(m).Env[i].ValueFrom.ResourceFieldRef.Resource = "limits.memory"
				}
			}
		}, "GOMEMLIMIT is 100%"},
		{"GOMEMLIMIT in MiB counted as bytes", func(m *Manifests, _ *[]string) {
			for i, e := range ctr(m).Env {
				if e.Name == "GOMEMLIMIT" {
					ctr(m).Env[i].ValueFrom.ResourceFieldRef.Divisor = resource.MustParse("1Mi")
				}
			}
		}, "divisor 1"},
		{"no GOMAXPROCS", func(m *Manifests, _ *[]string) {
			ctr(m).Env = slices.DeleteFunc(ctr(m).Env, func(e corev1.EnvVar) bool { return e.Name == "GOMAXPROCS" })
		}, "GOMAXPROCS"},
		{"no memory limit", func(m *Manifests, _ *[]string) { delete(ctr(m).Resources.Limits, corev1.ResourceMemory) }, "limits.memory"},
		{"runs as root", func(m *Manifests, _ *[]string) {
			u := int64(0)
			ctr(m).SecurityContext.RunAsUser = &u
			deploy(m).SecurityContext.RunAsUser = &u
		}, "runAsUser"},
		{"writable root", func(m *Manifests, _ *[]string) { ctr(m).SecurityContext.ReadOnlyRootFilesystem = ptr(false) }, "readOnlyRootFilesystem"},
		{"privilege escalation", func(m *Manifests, _ *[]string) { ctr(m).SecurityContext.AllowPrivilegeEscalation = nil }, "allowPrivilegeEscalation"},
		{"capabilities kept", func(m *Manifests, _ *[]string) { ctr(m).SecurityContext.Capabilities = nil }, "capabilities"},
		{"seccomp unconfined", func(m *Manifests, _ *[]string) {
			ctr(m).SecurityContext.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}
		}, "seccompProfile"},
		{"token mounted", func(m *Manifests, _ *[]string) {
			deploy(m).AutomountServiceAccountToken = nil
			m.ServiceAccounts["usersd"].AutomountServiceAccountToken = ptr(true)
		}, "automountServiceAccountToken"},
		{"no /tmp", func(m *Manifests, _ *[]string) { ctr(m).VolumeMounts = nil }, "/tmp"},
		{"job runs as root", func(m *Manifests, _ *[]string) { job(m).SecurityContext = nil }, "Job usersd-migrate: readOnlyRootFilesystem"},
		{"no appProtocol", func(m *Manifests, _ *[]string) { m.Services["usersd"].Spec.Ports[0].AppProtocol = nil }, "appProtocol"},
		{"Service misses the pods", func(m *Manifests, _ *[]string) {
			m.Services["usersd"].Spec.Selector = map[string]string{"app": "other"}
		}, "no Service selects"},
		{"configuration variable without an entry", func(_ *Manifests, vars *[]string) { *vars = append(*vars, "NEW_KNOB") }, "NEW_KNOB"},
		{"variable dropped from config.env", func(m *Manifests, _ *[]string) { delete(config(m), "RATE_LIMIT_RPS") }, "RATE_LIMIT_RPS"},
		{"misspelt variable", func(m *Manifests, _ *[]string) { config(m)["RATE_LIMT_RPS"] = "100" }, "RATE_LIMT_RPS is in the environment but usersd does not read it"},
		{"password in the ConfigMap", func(m *Manifests, _ *[]string) {
			config(m)["DATABASE_URL"] = "postgres://u:pw@db/usersd"
			ctr(m).Env = slices.DeleteFunc(ctr(m).Env, func(e corev1.EnvVar) bool { return e.Name == "DATABASE_URL" })
		}, "DATABASE_URL holds a credential"},
		{"DATABASE_URL optional", func(m *Manifests, _ *[]string) {
			for i, e := range ctr(m).Env {
				if e.Name == "DATABASE_URL" {
					ctr(m).Env[i].ValueFrom.SecretKeyRef.Optional = ptr(true)
				}
			}
		}, "DATABASE_URL must not be optional"},
		{"SMTP_URL optional", func(m *Manifests, _ *[]string) {
			for i, e := range ctr(m).Env {
				if e.Name == "SMTP_URL" {
					ctr(m).Env[i].ValueFrom.SecretKeyRef.Optional = ptr(true)
				}
			}
		}, "SMTP_URL must not be optional"},
		{"River listens through PgBouncer", func(m *Manifests, _ *[]string) { config(m)["RIVER_POLL_ONLY"] = "false" }, "RIVER_POLL_ONLY"},
		{"job serves", func(m *Manifests, _ *[]string) { job(m).Args = []string{"serve"} }, "no migration Job"},
		{"job without MIGRATE_DATABASE_URL", func(m *Manifests, _ *[]string) {
			job(m).Env = slices.DeleteFunc(job(m).Env, func(e corev1.EnvVar) bool { return e.Name == "MIGRATE_DATABASE_URL" })
		}, "no MIGRATE_DATABASE_URL"},
		{"job of another version", func(m *Manifests, _ *[]string) { job(m).Image = "usersd:old" }, "differs from the Deployment's"},
		{"no PDB", func(m *Manifests, _ *[]string) { clear(m.PDBs) }, "PodDisruptionBudget"},
		{"PDB blocks drains", func(m *Manifests, _ *[]string) {
			v := intstr.FromInt32(0)
			m.PDBs["usersd"].Spec.MaxUnavailable = &v
		}, "allows no disruption"},
		{"no HPA", func(m *Manifests, _ *[]string) { clear(m.HPAs) }, "HorizontalPodAutoscaler"},
		{"HPA below 3", func(m *Manifests, _ *[]string) { n := int32(2); m.HPAs["usersd"].Spec.MinReplicas = &n }, "minReplicas"},
		{"HPA on memory", func(m *Manifests, _ *[]string) {
			m.HPAs["usersd"].Spec.Metrics[0].Resource.Name = corev1.ResourceMemory
		}, "CPU utilisation"},
		{"no NetworkPolicy", func(m *Manifests, _ *[]string) { clear(m.NetworkPolicies) }, "no NetworkPolicy selects the server"},
		{"ingress on every port", func(m *Manifests, _ *[]string) { m.NetworkPolicies["usersd"].Spec.Ingress[0].Ports = nil }, "allows every port"},
		{"no DNS", func(m *Manifests, _ *[]string) { m.NetworkPolicies["usersd"].Spec.Egress[0].Ports = nil }, "DNS"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m, vars := setup(t)
			tc.mutate(m, &vars)
			got := Check(m, vars)
			if !slices.ContainsFunc(got, func(p string) bool { return strings.Contains(p, tc.want) }) {
				t.Errorf("the check did not catch it: want a problem mentioning %q, got %q", tc.want, got)
			}
		})
	}
}

// TestDecodeIsStrict: a misspelt or miscased field, a duplicate key and an
// unexpected kind or apiVersion are errors, as with the API server's strict
// field validation.
func TestDecodeIsStrict(t *testing.T) {
	t.Parallel()
	out, err := rendered()
	if err != nil {
		t.Fatal(err)
	}
	base := string(out)
	for _, tc := range []struct{ name, old, new, want string }{
		{"unknown field", "terminationGracePeriodSeconds:", "terminationGracePeriodSecond:", "unknown field"},
		{"field in the wrong case", "readinessProbe:", "readinessprobe:", "unknown field"},
		{"duplicate key", "  replicas: 3\n", "  replicas: 3\n  replicas: 4\n", "replicas"},
		{"old apiVersion", "apiVersion: autoscaling/v2\n", "apiVersion: autoscaling/v1\n", "unexpected object"},
		{"wrong type", "  replicas: 3\n", "  replicas: three\n", "replicas"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if !strings.Contains(base, tc.old) {
				t.Fatalf("the render has no %q to change", tc.old)
			}
			_, err := Decode([]byte(strings.Replace(base, tc.old, tc.new, 1)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("decoding with %s: want an error mentioning %q, got %v", tc.name, tc.want, err)
			}
		})
	}
	if _, err := Decode([]byte("# nothing\n---\n")); err == nil {
		t.Error("an empty render decoded without error")
	}
}

// TestSecretsFromConfig: the check's list of credentials includes every
// variable package config marks secret.
func TestSecretsFromConfig(t *testing.T) {
	t.Parallel()
	for _, v := range config.Variables {
		if v.Secret && !slices.Contains(secretVars, v.Name) {
			t.Errorf("%s is secret in package config, but the check does not treat it as a credential", v.Name)
		}
	}
}
