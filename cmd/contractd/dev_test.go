package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The banner `contractd dev` prints names the operations console and the
// token that signs in to it, beside the API, the simulator and the webhook
// receiver.
func TestDevBannerNamesTheConsole(t *testing.T) {
	t.Parallel()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"launch":{"url":"http://sim.example/sim/sign-page/s1"}}`))
	}))
	defer api.Close()
	var out strings.Builder
	printDevBanner(t.Context(), &out, api.URL, "http://sim.example", "http://127.0.0.1:1234/   (a receiver)")
	banner := out.String()
	for _, want := range []string{
		"API:        " + api.URL,
		"Simulator:  http://sim.example",
		"Console:    " + api.URL + "/ops/",
		"sign in with the ops token " + `"` + devOpsToken + `"`,
		"http://sim.example/sim/sign-page/s1",
		"Webhooks:   http://127.0.0.1:1234/   (a receiver)",
	} {
		if !strings.Contains(banner, want) {
			t.Errorf("the banner lacks %q:\n%s", want, banner)
		}
	}
}
