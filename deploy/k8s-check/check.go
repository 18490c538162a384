package k8scheck

import (
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The contract of docs/deployment.md's Kubernetes section.
const (
	deploymentName = "usersd"
	containerName  = "usersd"
	secretName     = "usersd-secrets"
	nonroot        = 65532 // the image's user and group
	replicas       = 3
	h2c            = "kubernetes.io/h2c"
	defaultBind    = "0.0.0.0:8000" // cmd/usersd/config.go

	// cmd/usersd/run.go: after River's soft stop, min(remaining/4, 2 s) of
	// SHUTDOWN_TIMEOUT is kept for cancelling the jobs still running; after
	// shutdown, buffered spans get up to 5 s to flush.
	riverCancelMargin = 2 * time.Second
	spanFlush         = 5 * time.Second
)

// secretVars hold credentials (package config marks them secret): they
// come from the Secret, never from the ConfigMap or a literal. requiredSecrets are not optional anywhere;
// servingSecrets not in the Deployment (without SMTP_URL usersd mails
// nobody: its mailer for development only logs that it did not).
var (
	secretVars      = []string{"DATABASE_URL", "MIGRATE_DATABASE_URL", "READ_DATABASE_URLS", "SMTP_URL", "RIVER_UI_PASSWORD"}
	requiredSecrets = []string{"DATABASE_URL", "MIGRATE_DATABASE_URL"}
	servingSecrets  = append(slices.Clone(requiredSecrets), "SMTP_URL")
	// runtimeVars are the Go runtime's, not usersd's, set from the resources.
	runtimeVars = []string{"GOMAXPROCS", "GOMEMLIMIT"}
)

// problems collects what is wrong, one sentence each.
type problems []string

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

// Check returns what is wrong with the manifests, nothing when they keep
// the contract. vars are the variables usersd reads (package config's
// names); a name ending in * is a prefix.
func Check(m *Manifests, vars []string) []string {
	var p problems
	d, ok := m.Deployments[deploymentName]
	if !ok {
		p.add("no Deployment %q", deploymentName)
		return p
	}
	podLabels := labels.Set(d.Spec.Template.Labels)
	ps := &d.Spec.Template.Spec

	if d.Spec.Replicas == nil || *d.Spec.Replicas != replicas {
		p.add("Deployment: replicas must be %d, got %v", replicas, deref(d.Spec.Replicas))
	}
	if !selects(d.Spec.Selector, podLabels) {
		p.add("Deployment: the selector does not match the pod template's labels")
	}
	checkStrategy(&p, d.Spec.Strategy)

	var c *corev1.Container
	for i := range ps.Containers {
		if ps.Containers[i].Name == containerName {
			c = &ps.Containers[i]
		}
	}
	if c == nil || len(ps.Containers) != 1 {
		p.add("Deployment: want one container named %q", containerName)
		return p
	}
	env := resolveEnv(&p, m, "Deployment", c)

	port := bindPort(&p, env)
	portName := ""
	for _, cp := range c.Ports {
		if cp.ContainerPort == port && (cp.Protocol == "" || cp.Protocol == corev1.ProtocolTCP) {
			portName = cp.Name
		}
	}
	if portName == "" && !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.ContainerPort == port }) {
		p.add("Deployment: no containerPort %d (BIND's port)", port)
	}
	matches := func(ip intstr.IntOrString) bool {
		if ip.Type == intstr.String {
			return portName != "" && ip.StrVal == portName
		}
		return ip.IntVal == port
	}

	checkProbes(&p, c, port, matches)
	sleep := checkPreStop(&p, c)
	checkGrace(&p, ps, env, sleep)
	checkResources(&p, c, env)
	checkEnv(&p, env, vars)
	checkPod(&p, m, "Deployment", ps, c)

	checkService(&p, m, podLabels, matches)
	checkPDB(&p, m, podLabels)
	checkHPA(&p, m, d.Name)
	jobLabels := checkJobs(&p, m, c.Image)
	checkNetworkPolicies(&p, m, podLabels, jobLabels, port, portName)
	return p
}

func checkStrategy(p *problems, s appsv1.DeploymentStrategy) {
	if s.Type != "" && s.Type != "RollingUpdate" {
		p.add("Deployment: strategy must be RollingUpdate, got %s", s.Type)
		return
	}
	ru := s.RollingUpdate
	if ru == nil || ru.MaxUnavailable == nil {
		p.add("Deployment: rollingUpdate.maxUnavailable must be set to 0 (the default is 25%%)")
		return
	}
	if mu := *ru.MaxUnavailable; !(mu.Type == intstr.Int && mu.IntVal == 0 || mu.Type == intstr.String && mu.StrVal == "0%") {
		p.add("Deployment: rollingUpdate.maxUnavailable must be 0, got %s", mu.String())
	}
	if ru.MaxSurge == nil {
		p.add("Deployment: rollingUpdate.maxSurge must be set (1)")
	} else if n, err := intstr.GetScaledValueFromIntOrPercent(ru.MaxSurge, replicas, true); err != nil || n < 1 {
		p.add("Deployment: rollingUpdate.maxSurge must allow at least one extra pod, got %s", ru.MaxSurge.String())
	}
}

func checkProbes(p *problems, c *corev1.Container, port int32, matches func(intstr.IntOrString) bool) {
	grpcProbe := func(name string, pr *corev1.Probe) {
		switch {
		case pr == nil:
			p.add("Deployment: no %s", name)
		case pr.GRPC == nil:
			p.add("Deployment: %s must be a grpc: probe (the gRPC health service)", name)
		case pr.GRPC.Port != port:
			p.add("Deployment: %s probes port %d, usersd listens on %d (BIND)", name, pr.GRPC.Port, port)
		case pr.GRPC.Service != nil && *pr.GRPC.Service != "" && *pr.GRPC.Service != "users.v1.UserService":
			p.add("Deployment: %s asks for health of service %q, which usersd does not report", name, *pr.GRPC.Service)
		}
	}
	grpcProbe("startupProbe", c.StartupProbe)
	grpcProbe("readinessProbe", c.ReadinessProbe)
	switch lp := c.LivenessProbe; {
	case lp == nil:
		p.add("Deployment: no livenessProbe")
	case lp.HTTPGet == nil:
		p.add("Deployment: livenessProbe must be httpGet /livez (no database call)")
	case lp.HTTPGet.Path != "/livez":
		p.add("Deployment: livenessProbe must get /livez, got %q", lp.HTTPGet.Path)
	case !matches(lp.HTTPGet.Port):
		p.add("Deployment: livenessProbe port %s is not %d (BIND)", lp.HTTPGet.Port.String(), port)
	case lp.HTTPGet.Scheme != "" && lp.HTTPGet.Scheme != corev1.URISchemeHTTP:
		p.add("Deployment: livenessProbe must use HTTP (usersd serves cleartext)")
	}
}

func checkPreStop(p *problems, c *corev1.Container) time.Duration {
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		p.add("Deployment: lifecycle.preStop must be the native sleep action (the image has no shell)")
		return 0
	}
	ps := c.Lifecycle.PreStop
	if ps.Exec != nil || ps.HTTPGet != nil || ps.TCPSocket != nil {
		p.add("Deployment: lifecycle.preStop must be only a sleep")
	}
	if ps.Sleep.Seconds <= 0 {
		p.add("Deployment: lifecycle.preStop.sleep.seconds must be positive, got %d", ps.Sleep.Seconds)
	}
	return time.Duration(ps.Sleep.Seconds) * time.Second
}

// checkGrace checks that SIGKILL cannot come before usersd is done: the
// grace period covers the preStop sleep, then SHUTDOWN_DRAIN, in-flight
// requests (REQUEST_TIMEOUT) and River's soft stop, which is what is left of
// SHUTDOWN_TIMEOUT less the cancel margin (cmd/usersd/run.go).
func checkGrace(p *problems, ps *corev1.PodSpec, env map[string]envValue, sleep time.Duration) {
	drain := duration(p, env, "SHUTDOWN_DRAIN", 0)
	request := duration(p, env, "REQUEST_TIMEOUT", 15*time.Second)
	total := duration(p, env, "SHUTDOWN_TIMEOUT", 20*time.Second)
	if drain <= 0 {
		p.add("Deployment: SHUTDOWN_DRAIN must be above 0 behind the Service (readiness reports NOT_SERVING while requests are still served)")
	}
	rest := total - drain - request
	riverSoft := rest - min(rest/4, riverCancelMargin)
	if riverSoft <= 0 {
		p.add("Deployment: SHUTDOWN_TIMEOUT %v leaves River no soft stop after SHUTDOWN_DRAIN %v and REQUEST_TIMEOUT %v", total, drain, request)
	}
	if ps.TerminationGracePeriodSeconds == nil {
		p.add("Deployment: terminationGracePeriodSeconds must be set (the default 30 s is not derived from the shutdown settings)")
		return
	}
	grace := time.Duration(*ps.TerminationGracePeriodSeconds) * time.Second
	if need := sleep + drain + request + riverSoft; grace <= need {
		p.add("Deployment: terminationGracePeriodSeconds %v must be above preStop sleep %v + SHUTDOWN_DRAIN %v + REQUEST_TIMEOUT %v + River soft stop %v = %v",
			grace, sleep, drain, request, riverSoft, need)
	}
	if need := sleep + total + spanFlush; grace <= need {
		p.add("Deployment: terminationGracePeriodSeconds %v must be above preStop sleep %v + SHUTDOWN_TIMEOUT %v + span flush %v = %v",
			grace, sleep, total, spanFlush, need)
	}
}

func checkResources(p *problems, c *corev1.Container, env map[string]envValue) {
	req, lim := c.Resources.Requests, c.Resources.Limits
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q, ok := req[r]; !ok || q.IsZero() {
			p.add("Deployment: resources.requests.%s must be set", r)
		}
	}
	if q, ok := lim[corev1.ResourceMemory]; !ok || q.IsZero() {
		p.add("Deployment: resources.limits.memory must be set")
		return
	}
	if q, ok := lim[corev1.ResourceCPU]; !ok || q.IsZero() {
		p.add("Deployment: resources.limits.cpu must be set (GOMAXPROCS comes from it)")
	}

	one := resource.MustParse("1")
	divisorOK := func(rf *corev1.ResourceFieldSelector) bool {
		return rf.Divisor.IsZero() || rf.Divisor.Cmp(one) == 0
	}
	ownContainer := func(rf *corev1.ResourceFieldSelector) bool {
		return rf.ContainerName == "" || rf.ContainerName == c.Name
	}

	if v, ok := env["GOMAXPROCS"]; !ok || v.resource == nil || v.resource.Resource != "limits.cpu" || !divisorOK(v.resource) || !ownContainer(v.resource) {
		p.add("Deployment: GOMAXPROCS must come from resourceFieldRef limits.cpu with divisor 1")
	}

	limit := lim[corev1.ResourceMemory]
	var memlimit int64
	switch v, ok := env["GOMEMLIMIT"]; {
	case !ok:
		p.add("Deployment: GOMEMLIMIT must be set, below resources.limits.memory")
		return
	case v.resource != nil:
		rf := v.resource
		if !ownContainer(rf) || !divisorOK(rf) {
			p.add("Deployment: GOMEMLIMIT's resourceFieldRef must be this container's, with divisor 1 (GOMEMLIMIT without a suffix counts bytes)")
			return
		}
		switch rf.Resource {
		case "requests.memory":
			q := req[corev1.ResourceMemory]
			memlimit = q.Value()
		case "limits.memory":
			memlimit = limit.Value()
		default:
			p.add("Deployment: GOMEMLIMIT from resourceFieldRef %s: want requests.memory or limits.memory", rf.Resource)
			return
		}
	case v.source == "value" || v.source == "configMap":
		n, err := parseMemLimit(v.value)
		if err != nil {
			p.add("Deployment: GOMEMLIMIT %q: %v", v.value, err)
			return
		}
		memlimit = n
	default:
		p.add("Deployment: GOMEMLIMIT must be a value or a resourceFieldRef")
		return
	}
	if r := float64(memlimit) / float64(limit.Value()); r < 0.80 || r > 0.95 {
		p.add("Deployment: GOMEMLIMIT is %.0f%% of resources.limits.memory; want 80%% to 95%% (room for memory the Go heap does not count, without wasting the limit)", r*100)
	}
}

var memLimitSyntax = regexp.MustCompile(`^([0-9]+)(B|KiB|MiB|GiB|TiB)?$`)

// parseMemLimit reads GOMEMLIMIT as the Go runtime does (runtime/debug).
func parseMemLimit(s string) (int64, error) {
	m := memLimitSyntax.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("not a number of bytes with an optional B, KiB, MiB, GiB or TiB suffix")
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return 0, err
	}
	shift := map[string]uint{"": 0, "B": 0, "KiB": 10, "MiB": 20, "GiB": 30, "TiB": 40}[m[2]]
	return n << shift, nil
}

// checkEnv checks that every variable usersd reads is provided, each secret
// from the Secret, and that nothing else is (a misspelt name is provided
// for nothing).
func checkEnv(p *problems, env map[string]envValue, vars []string) {
	known := func(name string) bool {
		for _, v := range vars {
			if prefix, ok := strings.CutSuffix(v, "*"); ok && strings.HasPrefix(name, prefix) || v == name {
				return true
			}
		}
		return slices.Contains(runtimeVars, name)
	}
	for _, v := range vars {
		if prefix, ok := strings.CutSuffix(v, "*"); ok {
			if !slices.ContainsFunc(keys(env), func(k string) bool { return strings.HasPrefix(k, prefix) }) {
				p.add("Deployment: no %s variable in the environment (package config defines %s)", v, v)
			}
			continue
		}
		if _, ok := env[v]; !ok {
			p.add("Deployment: %s (a variable usersd reads) is not in the environment: add it to deploy/k8s/config.env, or to the Deployment's env from the Secret", v)
		}
	}
	for _, k := range keys(env) {
		if !known(k) {
			p.add("Deployment: %s is in the environment but usersd does not read it (a misspelt name?)", k)
		}
	}
	for k, v := range env {
		secretLike := slices.Contains(secretVars, k) || strings.Contains(k, "PASSWORD") || strings.Contains(k, "SECRET")
		if !secretLike {
			continue
		}
		if v.secret == nil {
			p.add("Deployment: %s holds a credential: it must come from the Secret %s (secretKeyRef), not from %s", k, secretName, v.source)
			continue
		}
		if v.secret.Name != secretName {
			p.add("Deployment: %s comes from Secret %q, want %q", k, v.secret.Name, secretName)
		}
		if slices.Contains(servingSecrets, k) && v.secret.Optional != nil && *v.secret.Optional {
			p.add("Deployment: %s must not be optional", k)
		}
	}
	// Behind PgBouncer's transaction pooling LISTEN cannot work; River polls.
	if v, ok := env["RIVER_POLL_ONLY"]; ok && v.value != "true" {
		p.add("Deployment: RIVER_POLL_ONLY must be true (DATABASE_URL may go through PgBouncer in transaction pooling), got %q", v.value)
	}
}

// checkPod checks the security settings of a pod and its container, as
// they take effect (a container's setting wins over the pod's).
func checkPod(p *problems, m *Manifests, where string, ps *corev1.PodSpec, c *corev1.Container) {
	psc := ps.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	csc := c.SecurityContext
	if csc == nil {
		csc = &corev1.SecurityContext{}
	}
	if b := pick(csc.RunAsNonRoot, psc.RunAsNonRoot); b == nil || !*b {
		p.add("%s: runAsNonRoot must be true", where)
	}
	if u := pick(csc.RunAsUser, psc.RunAsUser); u == nil || *u != nonroot {
		p.add("%s: runAsUser must be %d, got %v", where, nonroot, deref(u))
	}
	if g := pick(csc.RunAsGroup, psc.RunAsGroup); g == nil || *g != nonroot {
		p.add("%s: runAsGroup must be %d, got %v", where, nonroot, deref(g))
	}
	if sp := pick(csc.SeccompProfile, psc.SeccompProfile); sp == nil || sp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		p.add("%s: seccompProfile must be RuntimeDefault", where)
	}
	if csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem {
		p.add("%s: readOnlyRootFilesystem must be true", where)
	}
	if csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
		p.add("%s: allowPrivilegeEscalation must be false", where)
	}
	if csc.Privileged != nil && *csc.Privileged {
		p.add("%s: must not be privileged", where)
	}
	if csc.Capabilities == nil || !slices.Contains(csc.Capabilities.Drop, "ALL") || len(csc.Capabilities.Add) > 0 {
		p.add("%s: capabilities must drop ALL and add none", where)
	}
	if ps.HostNetwork || ps.HostPID || ps.HostIPC {
		p.add("%s: no host namespaces", where)
	}

	automount := ps.AutomountServiceAccountToken
	if sa, ok := m.ServiceAccounts[ps.ServiceAccountName]; automount == nil && ok {
		automount = sa.AutomountServiceAccountToken
	}
	if automount == nil || *automount {
		p.add("%s: automountServiceAccountToken must be false (usersd does not call the Kubernetes API)", where)
	}
	if n := ps.ServiceAccountName; n != "" && n != "default" {
		if _, ok := m.ServiceAccounts[n]; !ok {
			p.add("%s: ServiceAccount %q is not in the manifests", where, n)
		}
	}

	tmp := false
	for _, vm := range c.VolumeMounts {
		if vm.MountPath != "/tmp" {
			continue
		}
		for _, v := range ps.Volumes {
			if v.Name == vm.Name && v.EmptyDir != nil && !vm.ReadOnly {
				tmp = true
			}
		}
	}
	if !tmp {
		p.add("%s: /tmp must be a writable emptyDir (the root filesystem is read-only)", where)
	}
}

func checkService(p *problems, m *Manifests, podLabels labels.Set, matches func(intstr.IntOrString) bool) {
	found := false
	for _, s := range m.Services {
		if len(s.Spec.Selector) == 0 || !labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels) {
			continue
		}
		found = true
		for _, sp := range s.Spec.Ports {
			target := sp.TargetPort
			if target.Type == intstr.Int && target.IntVal == 0 {
				target = intstr.FromInt32(sp.Port) // the default
			}
			if !matches(target) {
				p.add("Service %s: port %s targets %s, not usersd's port", s.Name, sp.Name, target.String())
			}
			if sp.AppProtocol == nil || *sp.AppProtocol != h2c {
				p.add("Service %s: port %s must have appProtocol %s (cleartext HTTP/2 with prior knowledge, for gRPC)", s.Name, sp.Name, h2c)
			}
		}
		if len(s.Spec.Ports) == 0 {
			p.add("Service %s: no ports", s.Name)
		}
	}
	if !found {
		p.add("no Service selects the Deployment's pods")
	}
}

func checkPDB(p *problems, m *Manifests, podLabels labels.Set) {
	found := false
	for _, pdb := range m.PDBs {
		if !selects(pdb.Spec.Selector, podLabels) {
			continue
		}
		found = true
		allowed := 0
		switch s := pdb.Spec; {
		case s.MaxUnavailable != nil:
			allowed, _ = intstr.GetScaledValueFromIntOrPercent(s.MaxUnavailable, replicas, true)
		case s.MinAvailable != nil:
			n, _ := intstr.GetScaledValueFromIntOrPercent(s.MinAvailable, replicas, true)
			allowed = replicas - n
		}
		if allowed < 1 {
			p.add("PodDisruptionBudget %s: allows no disruption of %d replicas: node drains would block", pdb.Name, replicas)
		}
		if allowed >= replicas {
			p.add("PodDisruptionBudget %s: allows all %d replicas to go at once", pdb.Name, replicas)
		}
	}
	if !found {
		p.add("no PodDisruptionBudget (policy/v1) selects the Deployment's pods")
	}
}

func checkHPA(p *problems, m *Manifests, deployment string) {
	found := false
	for _, h := range m.HPAs {
		ref := h.Spec.ScaleTargetRef
		if ref.Kind != "Deployment" || ref.Name != deployment || ref.APIVersion != "apps/v1" {
			continue
		}
		found = true
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < replicas {
			p.add("HorizontalPodAutoscaler %s: minReplicas must be at least %d, got %v", h.Name, replicas, deref(h.Spec.MinReplicas))
		}
		if h.Spec.MinReplicas != nil && h.Spec.MaxReplicas < *h.Spec.MinReplicas {
			p.add("HorizontalPodAutoscaler %s: maxReplicas %d below minReplicas", h.Name, h.Spec.MaxReplicas)
		}
		cpu := false
		for _, ms := range h.Spec.Metrics {
			r := ms.Resource
			if ms.Type == "Resource" && r != nil && r.Name == corev1.ResourceCPU && r.Target.Type == "Utilization" &&
				r.Target.AverageUtilization != nil && *r.Target.AverageUtilization > 0 && *r.Target.AverageUtilization <= 100 {
				cpu = true
			}
		}
		if !cpu {
			p.add("HorizontalPodAutoscaler %s: must scale on CPU utilisation (a Resource metric, cpu, Utilization 1-100)", h.Name)
		}
	}
	if !found {
		p.add("no HorizontalPodAutoscaler (autoscaling/v2) scales Deployment %s", deployment)
	}
}

// checkJobs checks the migration Job and returns its pods' labels.
func checkJobs(p *problems, m *Manifests, image string) labels.Set {
	var found labels.Set
	for _, j := range m.Jobs {
		ps := &j.Spec.Template.Spec
		if len(ps.Containers) != 1 {
			p.add("Job %s: want one container", j.Name)
			continue
		}
		c := &ps.Containers[0]
		where := "Job " + j.Name
		if !(len(c.Command) == 0 && slices.Equal(c.Args, []string{"migrate"}) ||
			slices.Equal(append(slices.Clone(c.Command), c.Args...), []string{"/usersd", "migrate"})) {
			p.add("%s: must run `usersd migrate` (args [migrate] on the image's entrypoint), got command %q args %q", where, c.Command, c.Args)
			continue
		}
		found = j.Spec.Template.Labels
		if c.Image != image {
			p.add("%s: image %q differs from the Deployment's %q (migrations must come from the version that serves)", where, c.Image, image)
		}
		env := resolveEnv(p, m, where, c)
		for _, k := range requiredSecrets {
			v, ok := env[k]
			switch {
			case !ok:
				p.add("%s: no %s (usersd migrate needs it)", where, k)
			case v.secret == nil || v.secret.Name != secretName:
				p.add("%s: %s must come from the Secret %s (secretKeyRef)", where, k, secretName)
			case v.secret.Optional != nil && *v.secret.Optional:
				p.add("%s: %s must not be optional", where, k)
			}
		}
		if rp := ps.RestartPolicy; rp != corev1.RestartPolicyNever && rp != corev1.RestartPolicyOnFailure {
			p.add("%s: restartPolicy must be Never or OnFailure, got %q", where, rp)
		}
		if j.Spec.BackoffLimit == nil {
			p.add("%s: backoffLimit must be set", where)
		}
		checkPod(p, m, where, ps, c)
	}
	if found == nil {
		p.add("no migration Job running `usersd migrate`")
	}
	return found
}

func checkNetworkPolicies(p *problems, m *Manifests, podLabels, jobLabels labels.Set, port int32, portName string) {
	type allowed struct{ ingress, dns, db, issuer bool }
	check := func(what string, set labels.Set, server bool) {
		if set == nil {
			return
		}
		var got allowed
		n := 0
		for _, np := range m.NetworkPolicies {
			if !selects(&np.Spec.PodSelector, set) {
				continue
			}
			n++
			if !slices.Contains(np.Spec.PolicyTypes, "Ingress") || !slices.Contains(np.Spec.PolicyTypes, "Egress") {
				p.add("NetworkPolicy %s: policyTypes must include Ingress and Egress", np.Name)
			}
			for _, r := range np.Spec.Ingress {
				if !server {
					p.add("NetworkPolicy %s: the %s takes no connections", np.Name, what)
					continue
				}
				if len(r.Ports) == 0 {
					p.add("NetworkPolicy %s: an ingress rule allows every port; allow only %d", np.Name, port)
				}
				for _, pp := range r.Ports {
					if pp.Port == nil || !(pp.Port.Type == intstr.Int && pp.Port.IntVal == port || pp.Port.Type == intstr.String && pp.Port.StrVal == portName && portName != "") {
						p.add("NetworkPolicy %s: ingress allows a port other than %d", np.Name, port)
					}
				}
				got.ingress = true
			}
			for _, r := range np.Spec.Egress {
				for _, pp := range r.Ports {
					if pp.Port == nil {
						continue
					}
					switch pp.Port.IntValue() {
					case 53:
						got.dns = got.dns || pp.Protocol != nil && *pp.Protocol == corev1.ProtocolUDP
					case 5432, 6432:
						got.db = true
					case 443:
						got.issuer = true
					}
				}
			}
		}
		switch {
		case n == 0:
			p.add("no NetworkPolicy selects the %s's pods", what)
		case server && !got.ingress:
			p.add("NetworkPolicy: the %s's port %d must be reachable", what, port)
		}
		if n > 0 && !got.dns {
			p.add("NetworkPolicy: the %s needs egress to DNS (53/UDP)", what)
		}
		if n > 0 && !got.db {
			p.add("NetworkPolicy: the %s needs egress to PostgreSQL (5432) or PgBouncer (6432)", what)
		}
		if n > 0 && server && !got.issuer {
			p.add("NetworkPolicy: the %s needs egress to the OpenID issuer (443)", what)
		}
	}
	check("server", podLabels, true)
	check("migration Job", jobLabels, false)
}

// envValue is where one variable of a container comes from.
type envValue struct {
	source   string // value, configMap, secret, resource, field
	value    string // of a value or a ConfigMap key
	secret   *corev1.SecretKeySelector
	resource *corev1.ResourceFieldSelector
}

// resolveEnv returns a container's environment as Kubernetes builds it:
// envFrom first, then env, which wins; ConfigMaps are looked up in the
// manifests, so a missing one or a missing key is a problem.
func resolveEnv(p *problems, m *Manifests, where string, c *corev1.Container) map[string]envValue {
	env := map[string]envValue{}
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			cm, ok := m.ConfigMaps[ef.ConfigMapRef.Name]
			if !ok {
				p.add("%s: envFrom ConfigMap %q is not in the manifests", where, ef.ConfigMapRef.Name)
				continue
			}
			for k, v := range cm.Data {
				env[ef.Prefix+k] = envValue{source: "configMap", value: v}
			}
		case ef.SecretRef != nil:
			p.add("%s: envFrom Secret %q: which variables it provides cannot be checked; use secretKeyRef per variable", where, ef.SecretRef.Name)
		}
	}
	for _, e := range c.Env {
		vf := e.ValueFrom
		switch {
		case vf == nil:
			env[e.Name] = envValue{source: "value", value: e.Value}
		case vf.ConfigMapKeyRef != nil:
			ref := vf.ConfigMapKeyRef
			cm, ok := m.ConfigMaps[ref.Name]
			v, hasKey := "", false
			if ok {
				v, hasKey = cm.Data[ref.Key]
			}
			if !hasKey {
				p.add("%s: %s refers to ConfigMap %q key %q, which the manifests do not have", where, e.Name, ref.Name, ref.Key)
			}
			env[e.Name] = envValue{source: "configMap", value: v}
		case vf.SecretKeyRef != nil:
			env[e.Name] = envValue{source: "secret", secret: vf.SecretKeyRef}
		case vf.ResourceFieldRef != nil:
			env[e.Name] = envValue{source: "resource", resource: vf.ResourceFieldRef}
		default:
			env[e.Name] = envValue{source: "field"}
		}
	}
	return env
}

func duration(p *problems, env map[string]envValue, name string, def time.Duration) time.Duration {
	v, ok := env[name]
	if !ok || v.value == "" && (v.source == "value" || v.source == "configMap") {
		return def
	}
	if v.source != "value" && v.source != "configMap" {
		p.add("Deployment: %s must be a value or from the ConfigMap, to be checked", name)
		return def
	}
	d, err := time.ParseDuration(v.value)
	if err != nil || d < 0 {
		p.add("Deployment: %s %q is not a duration", name, v.value)
		return def
	}
	return d
}

func bindPort(p *problems, env map[string]envValue) int32 {
	bind := defaultBind
	if v, ok := env["BIND"]; ok && v.value != "" {
		bind = v.value
	}
	_, port, err := net.SplitHostPort(bind)
	n, perr := strconv.ParseInt(port, 10, 32)
	if err != nil || perr != nil || n <= 0 || n > 65535 {
		p.add("Deployment: BIND %q is not host:port", bind)
		return 8000
	}
	return int32(n)
}

func selects(s *metav1.LabelSelector, set labels.Set) bool {
	if s == nil {
		return false
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	return err == nil && !sel.Empty() && sel.Matches(set)
}

func pick[T any](container, pod *T) *T {
	if container != nil {
		return container
	}
	return pod
}

func deref[T any](v *T) any {
	if v == nil {
		return "unset"
	}
	return *v
}

func keys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
