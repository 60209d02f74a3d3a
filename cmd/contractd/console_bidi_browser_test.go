package main

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// Issue 18, point 6: display names are rendered isolated from the page
// around them (a <bdi> element or dir=auto, which browsers render with
// unicode-bidi: isolate), so that right-to-left text, or a bidi override a
// contract stored before the field rule refused them, cannot reorder what
// follows. Checked in chromium on the rendered DOM.
func TestConsoleIsolatesDisplayNamesInABrowser(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{Env: map[string]string{
		"CONTRACTD_API_TOKENS": "app:" + appToken + ",ops:" + opsToken + ",ops:alice:" + aliceToken,
	}})
	const code = "bidi-1"
	name, account := "\u202eevil.exe", "\u0645\u062d\u0645\u062f \u0639\u0644\u064a"
	if _, err := s.DB.Pool.Exec(t.Context(), `INSERT INTO contracts (out_contract_code, product, channel, state, plan_id,
		user_display_name, contract_display_account) VALUES ($1, 'papay', 'app', 'created', 1, $2, $3)`, code, name, account); err != nil {
		t.Fatal(err)
	}
	ctx := browser(t)
	signIn(t, ctx, s.URL, aliceToken)
	step(t, ctx, "open the contract",
		chromedp.Navigate(s.URL+"/ops/contract?code="+code),
		chromedp.WaitVisible(chromedp.ID("timeline")))
	// For each shown name: its text, whether an isolating element holds
	// it, and the computed unicode-bidi of that element.
	type shown struct {
		Text      string `json:"text"`
		Isolating string `json:"isolating"`
		Bidi      string `json:"bidi"`
	}
	check := func(what, selector, want string) {
		t.Helper()
		got := value(t, ctx, what, chromedp.Evaluate[shown](`(() => {
			const el = document.querySelector(`+"`"+selector+"`"+`);
			if (!el) return {text: "", isolating: "", bidi: ""};
			const iso = el.closest("bdi, [dir=auto]");
			return {text: el.textContent, isolating: iso ? iso.outerHTML.slice(0, 40) : "",
				bidi: iso ? getComputedStyle(iso).unicodeBidi : ""};
		})()`))
		if got.Text != want {
			t.Fatalf("%s shows %q, want %q", what, got.Text, want)
		}
		if got.Isolating == "" || !strings.HasPrefix(got.Bidi, "isolate") && got.Bidi != "plaintext" {
			t.Fatalf("%s is not isolated: element %q, unicode-bidi %q", what, got.Isolating, got.Bidi)
		}
	}
	check("user_display_name", "#user-display-name", name)
	check("contract_display_account", "#contract-display-account", account)
}
