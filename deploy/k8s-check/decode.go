package k8scheck

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Manifests are the rendered objects by kind, each map keyed by name.
type Manifests struct {
	Deployments     map[string]*appsv1.Deployment
	Services        map[string]*corev1.Service
	ConfigMaps      map[string]*corev1.ConfigMap
	ServiceAccounts map[string]*corev1.ServiceAccount
	Jobs            map[string]*batchv1.Job
	PDBs            map[string]*policyv1.PodDisruptionBudget
	HPAs            map[string]*autoscalingv2.HorizontalPodAutoscaler
	NetworkPolicies map[string]*networkingv1.NetworkPolicy
}

// Render returns the kustomize output of dir: the file named by $K8S_RENDER
// when set, else `kubectl kustomize dir`.
func Render(dir string) ([]byte, error) {
	if f := os.Getenv("K8S_RENDER"); f != "" {
		return os.ReadFile(f)
	}
	var stderr bytes.Buffer
	cmd := exec.Command("kubectl", "kustomize", dir)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("kubectl kustomize %s: %v: %s", dir, err, stderr.Bytes())
	}
	return out, nil
}

var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

// Decode splits a multi-document YAML stream and decodes each object
// strictly into the k8s.io/api type of its apiVersion and kind: duplicate
// keys, unknown fields and fields in the wrong case are errors (the API
// server's strict field validation), and so is a kind or an apiVersion this
// base is not meant to contain.
func Decode(stream []byte) (*Manifests, error) {
	m := &Manifests{
		Deployments:     map[string]*appsv1.Deployment{},
		Services:        map[string]*corev1.Service{},
		ConfigMaps:      map[string]*corev1.ConfigMap{},
		ServiceAccounts: map[string]*corev1.ServiceAccount{},
		Jobs:            map[string]*batchv1.Job{},
		PDBs:            map[string]*policyv1.PodDisruptionBudget{},
		HPAs:            map[string]*autoscalingv2.HorizontalPodAutoscaler{},
		NetworkPolicies: map[string]*networkingv1.NetworkPolicy{},
	}
	var errs []string
	n := 0
	for i, doc := range docSep.Split(string(stream), -1) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		n++
		if err := m.add(doc); err != nil {
			errs = append(errs, fmt.Sprintf("document %d: %v", i+1, err))
		}
	}
	if n == 0 {
		errs = append(errs, "no objects in the rendered manifests")
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return m, nil
}

func stripComments(doc string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

func (m *Manifests) add(doc string) error {
	j, err := yaml.YAMLToJSONStrict([]byte(doc))
	if err != nil {
		return err
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(j, &tm); err != nil {
		return err
	}
	var obj interface{ GetName() string }
	var put func() error
	switch tm.APIVersion + " " + tm.Kind {
	case "apps/v1 Deployment":
		o := &appsv1.Deployment{}
		obj, put = o, func() error { return addTo(m.Deployments, o) }
	case "v1 Service":
		o := &corev1.Service{}
		obj, put = o, func() error { return addTo(m.Services, o) }
	case "v1 ConfigMap":
		o := &corev1.ConfigMap{}
		obj, put = o, func() error { return addTo(m.ConfigMaps, o) }
	case "v1 ServiceAccount":
		o := &corev1.ServiceAccount{}
		obj, put = o, func() error { return addTo(m.ServiceAccounts, o) }
	case "batch/v1 Job":
		o := &batchv1.Job{}
		obj, put = o, func() error { return addTo(m.Jobs, o) }
	case "policy/v1 PodDisruptionBudget":
		o := &policyv1.PodDisruptionBudget{}
		obj, put = o, func() error { return addTo(m.PDBs, o) }
	case "autoscaling/v2 HorizontalPodAutoscaler":
		o := &autoscalingv2.HorizontalPodAutoscaler{}
		obj, put = o, func() error { return addTo(m.HPAs, o) }
	case "networking.k8s.io/v1 NetworkPolicy":
		o := &networkingv1.NetworkPolicy{}
		obj, put = o, func() error { return addTo(m.NetworkPolicies, o) }
	default:
		return fmt.Errorf("unexpected object %q %q (not one this base is meant to contain, or an old apiVersion)", tm.APIVersion, tm.Kind)
	}
	strict, err := sigsjson.UnmarshalStrict(j, obj)
	if err != nil {
		return fmt.Errorf("%s: %v", tm.Kind, err)
	}
	if len(strict) > 0 {
		msgs := make([]string, len(strict))
		for i, e := range strict {
			msgs[i] = e.Error()
		}
		return fmt.Errorf("%s %q: %s", tm.Kind, obj.GetName(), strings.Join(msgs, "; "))
	}
	if obj.GetName() == "" {
		return fmt.Errorf("%s without a name", tm.Kind)
	}
	return put()
}

func addTo[T interface{ GetName() string }](objs map[string]T, o T) error {
	if _, dup := objs[o.GetName()]; dup {
		return fmt.Errorf("two objects of one kind named %q", o.GetName())
	}
	objs[o.GetName()] = o
	return nil
}
