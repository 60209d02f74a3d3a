package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// specChecker checks every answer the end-to-end tests receive against the
// served /openapi.yaml: its status and body against the operation's
// responses, or, for a path or method the description does not have,
// against the Error schema.
type specChecker struct {
	doc    *openapi3.T
	router routers.Router
}

var (
	specOnce sync.Map // base URL -> *specChecker
)

// specFor loads the description the stack serves, once per stack. It may
// be called from any goroutine: a description it cannot load is reported
// with t.Errorf, and then it returns nil.
func specFor(t testing.TB, base string) *specChecker {
	if c, ok := specOnce.Load(base); ok {
		return c.(*specChecker)
	}
	c, err := loadSpec(base)
	if err != nil {
		t.Errorf("%s/openapi.yaml: %v", base, err)
		return nil
	}
	actual, _ := specOnce.LoadOrStore(base, c)
	return actual.(*specChecker)
}

func loadSpec(base string) (*specChecker, error) {
	resp, err := http.Get(base + "/openapi.yaml")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	doc, err := openapi3.NewLoader().LoadFromData(raw)
	if err != nil {
		return nil, err
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, err
	}
	doc.Servers = openapi3.Servers{{URL: base}}
	r, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	return &specChecker{doc: doc, router: r}, nil
}

// zoned finds an RFC3339 time that is not in UTC.
var zoned = regexp.MustCompile(`"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?[+-]\d\d:\d\d"`)

// check reports, as test errors, every way the answer to req breaks the
// description, and any time in it that is not UTC.
func (c *specChecker) check(t testing.TB, req *http.Request, r response) {
	t.Helper()
	if strings.Contains(r.Header.Get("Content-Type"), "json") {
		if m := zoned.Find(r.Body); m != nil {
			t.Errorf("%s %s answered a time that is not UTC, %s: %s", req.Method, req.URL.Path, m, clipBody(r.Body))
		}
	}
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		// No such path or method in the description: the answer must be
		// one of our errors.
		if !errors.Is(err, routers.ErrPathNotFound) && !errors.Is(err, routers.ErrMethodNotAllowed) {
			t.Errorf("%s %s: finding the route: %v", req.Method, req.URL.Path, err)
			return
		}
		if r.Status < 400 {
			t.Errorf("%s %s is not in openapi.yaml but answered %d", req.Method, req.URL.Path, r.Status)
		}
		var v any
		if err := json.Unmarshal(r.Body, &v); err != nil {
			t.Errorf("%s %s answered %d without a JSON body: %q", req.Method, req.URL.Path, r.Status, clipBody(r.Body))
			return
		}
		if err := c.doc.Components.Schemas["Error"].Value.VisitJSON(v); err != nil {
			t.Errorf("%s %s answered %d, not the Error schema: %v: %s", req.Method, req.URL.Path, r.Status, err, clipBody(r.Body))
		}
		return
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}},
		Status: r.Status,
		Header: r.Header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true,
			ExcludeResponseBody: !strings.Contains(r.Header.Get("Content-Type"), "json")},
	}
	in.SetBodyBytes(r.Body)
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		t.Errorf("%s %s answered %d against openapi.yaml: %v\nbody: %s", req.Method, req.URL.Path, r.Status, err, clipBody(r.Body))
	}
}

func clipBody(b []byte) []byte {
	if len(b) > 600 {
		return append(bytes.Clone(b[:600]), "..."...)
	}
	return b
}
