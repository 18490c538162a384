package server_test

import (
	"net/http"
	"testing"

	"connectrpc.com/grpchealth"
)

func grpcHealth(t *testing.T, hc *http.Client, base string) string {
	t.Helper()
	resp, err := grpchealth.NewClient(hc, base).Check(t.Context(), &grpchealth.CheckRequest{})
	if err != nil {
		t.Fatalf("health check: %v", err)
	}
	return map[grpchealth.Status]string{
		grpchealth.StatusServing:    "SERVING",
		grpchealth.StatusNotServing: "NOT_SERVING",
	}[resp.Status]
}

func httpStatus(t *testing.T, hc *http.Client, url string) int {
	t.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
