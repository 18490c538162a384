package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// openAPICheck validates the REST client's traffic against openapi.json
// with kin-openapi's openapi3filter: every request must be an operation of
// the document with the parameters and body it describes, and every answer
// one of its responses (status, headers, body), so the document cannot
// drift from the handlers. Authentication is the server's to check: the
// document's bearer scheme is not enforced on requests, and answers 401 are
// validated like any other.
type openAPICheck struct{ router routers.Router }

var openAPI struct {
	once   sync.Once
	router routers.Router
	err    error
}

func openAPIValidator(t *testing.T) *openAPICheck {
	t.Helper()
	openAPI.once.Do(func() {
		loader := openapi3.NewLoader()
		doc, err := loader.LoadFromFile("openapi.json")
		if err == nil {
			err = doc.Validate(loader.Context)
		}
		if err == nil && !doc.IsOpenAPI31OrLater() {
			err = fmt.Errorf("openapi.json is OpenAPI %s, want 3.1", doc.OpenAPI)
		}
		if err == nil {
			openAPI.router, err = gorillamux.NewRouter(doc)
		}
		openAPI.err = err
	})
	if openAPI.err != nil {
		t.Fatalf("openapi.json: %v", openAPI.err)
	}
	return &openAPICheck{router: openAPI.router}
}

// input finds req's operation. The document's server is make run's
// address; the test server's host is mapped onto it.
func (c *openAPICheck) input(req *http.Request, body []byte) (*openapi3filter.RequestValidationInput, error) {
	r := req.Clone(context.Background())
	r.URL.Scheme, r.URL.Host, r.Host = "http", "localhost:8000", "localhost:8000"
	r.Body = io.NopCloser(bytes.NewReader(body))
	route, params, err := c.router.FindRoute(r)
	if err != nil {
		return nil, fmt.Errorf("OpenAPI: %s %s is not an operation of openapi.json: %w", req.Method, req.URL.Path, err)
	}
	return &openapi3filter.RequestValidationInput{
		Request: r, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
	}, nil
}

func (c *openAPICheck) request(req *http.Request, body []byte) error {
	in, err := c.input(req, body)
	if err != nil {
		return err
	}
	if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
		return fmt.Errorf("OpenAPI: request %s %s does not match openapi.json: %w", req.Method, req.URL.Path, err)
	}
	return nil
}

func (c *openAPICheck) response(req *http.Request, body []byte, resp *http.Response, respBody []byte) error {
	in, err := c.input(req, body)
	if err != nil {
		return err
	}
	err = openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Body:                   io.NopCloser(bytes.NewReader(respBody)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true},
	})
	if err != nil {
		return fmt.Errorf("OpenAPI: response %d to %s %s does not match openapi.json: %w", resp.StatusCode, req.Method, req.URL.Path, err)
	}
	return nil
}

// TestOpenAPIServed: the document is served without a token, as committed.
func TestOpenAPIServed(t *testing.T) {
	t.Parallel()
	ts := setup(t, setupOpts{memory: true})
	resp, err := h1Client(t).Get(ts.URL + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	want, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || !bytes.Equal(got, want) {
		t.Errorf("GET /openapi.json: %d %s, %d bytes; want 200 and the committed document", resp.StatusCode, resp.Header.Get("Content-Type"), len(got))
	}
	if !json.Valid(got) {
		t.Error("the document is not JSON")
	}
}
