package httpapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/contractd/contractd/domain"
	"github.com/getkin/kin-openapi/openapi3"
)

func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(openAPI)
	if err != nil {
		t.Fatalf("openapi.yaml does not load: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.yaml is not valid OpenAPI: %v", err)
	}
	return doc
}

func TestOpenAPIIsValid(t *testing.T) {
	loadOpenAPI(t)
}

// specPath turns an Echo route path into its OpenAPI form.
func specPath(p string) string {
	return strings.NewReplacer(":code", "{out_contract_code}", ":id", "{id}", "/ops/*", "/ops/{page}").Replace(p)
}

func TestOpenAPIDescribesEveryServedRouteAndNoOther(t *testing.T) {
	doc := loadOpenAPI(t)
	s := New(Deps{API: &API{}, Console: http.NotFoundHandler()})
	served := map[string]bool{}
	for _, r := range s.echo.Router().Routes() {
		key := r.Method + " " + specPath(r.Path)
		served[key] = true
		item := doc.Paths.Find(specPath(r.Path))
		if item == nil || item.GetOperation(r.Method) == nil {
			t.Errorf("%s is served but not in openapi.yaml", key)
		}
	}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			if !served[method+" "+path] {
				t.Errorf("%s %s is in openapi.yaml but not served", method, path)
			}
		}
	}
	if len(served) < 12 {
		t.Fatalf("only %d routes found: %v", len(served), served)
	}
}

func TestOpenAPIErrorCodesAreTheAPIsCodes(t *testing.T) {
	doc := loadOpenAPI(t)
	var inSpec []string
	for _, v := range doc.Components.Schemas["Error"].Value.Properties["code"].Value.Enum {
		inSpec = append(inSpec, v.(string))
	}
	var mapped []string
	for code := range statusOf {
		if code == domain.CodeUnknownEventType {
			continue // only the notification route meets it, inside its FAIL body
		}
		mapped = append(mapped, string(code))
	}
	sort.Strings(inSpec)
	sort.Strings(mapped)
	if !slices.Equal(inSpec, mapped) {
		t.Fatalf("Error.code enum %v, the codes the API answers %v", inSpec, mapped)
	}
}

func TestOpenAPIIsServed(t *testing.T) {
	s := New(Deps{})
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/openapi.yaml", nil))
	if rec.Code != http.StatusOK || rec.Body.String() != string(openAPI) {
		t.Fatalf("%d %.40q", rec.Code, rec.Body.String())
	}
	if rec.Header().Get("X-Request-Id") == "" {
		t.Fatal("no request id")
	}
}
