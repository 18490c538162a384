// Package k8scheck checks the Kubernetes manifests in deploy/k8s: it renders
// the kustomize base, decodes every object strictly into its k8s.io/api type
// (an unknown or misspelt field is an error, as in the API server) and checks
// the contract of docs/deployment.md's Kubernetes section against the rendered
// objects. `make test-k8s` (scripts/test-k8s.sh) runs it.
//
// It is a module of its own so that the service's go.mod holds only what
// usersd imports.
package k8scheck
