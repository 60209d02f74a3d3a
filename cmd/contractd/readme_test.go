package main

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/contractd/contractd/domain"
)

func TestReadmeShowsTheFSMDiagram(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "```mermaid\n"+domain.Mermaid()+"```") {
		t.Fatalf("README.md's mermaid block differs from `contractd fsm`:\n%s", domain.Mermaid())
	}
}

func TestFSMCommandPrintsTheDiagram(t *testing.T) {
	var out, errb strings.Builder
	if code := run(t.Context(), []string{"fsm"}, func(string) string { return "" }, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if out.String() != domain.Mermaid() {
		t.Fatalf("fsm printed %q", out.String())
	}
}

// readmeAnchor is the anchor GitHub gives a heading: lower case, letters,
// digits, '-' and '_' kept, spaces turned into '-', the rest dropped.
func readmeAnchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

func readReadme(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The README's first screen: the title, a short paragraph saying what
// contractd is, the two commands that run the service and the tests, then
// the table of contents.
func TestReadmeFirstScreen(t *testing.T) {
	t.Parallel()
	blocks := strings.Split(readReadme(t), "\n\n")
	if len(blocks) < 4 || blocks[0] != "# contractd" {
		t.Fatalf("the README does not start with the title and three blocks after it")
	}
	what := strings.Split(blocks[1], "\n")
	if len(what) < 2 || len(what) > 4 || !strings.HasPrefix(what[0], "contractd is ") {
		t.Errorf("the paragraph after the title has %d lines and starts %q; want 2 to 4 lines saying what contractd is", len(what), what[0])
	}
	cmds := strings.Split(blocks[2], "\n")
	if len(cmds) != 4 || cmds[0] != "```sh" || !strings.HasPrefix(cmds[1], "bash scripts/dev ") || !strings.HasPrefix(cmds[2], "bash scripts/test ") || cmds[3] != "```" {
		t.Errorf("the block after it is not the two commands (scripts/dev, scripts/test):\n%s", blocks[2])
	}
	if !strings.HasPrefix(blocks[3], "**Contents:**") {
		t.Errorf("the table of contents does not follow the commands:\n%s", blocks[3])
	}
}

// The table of contents lists every section (## heading) in order, and
// every link in it leads to one.
func TestReadmeTableOfContents(t *testing.T) {
	t.Parallel()
	readme := readReadme(t)
	blocks := strings.Split(readme, "\n\n")
	if len(blocks) < 4 {
		t.Fatal("the README is too short")
	}
	var listed []string
	for _, m := range regexp.MustCompile(`\]\(#([^)]+)\)`).FindAllStringSubmatch(blocks[3], -1) {
		listed = append(listed, m[1])
	}
	var sections []string
	inCode := false
	for l := range strings.SplitSeq(readme, "\n") {
		if strings.HasPrefix(l, "```") {
			inCode = !inCode
		}
		if !inCode && strings.HasPrefix(l, "## ") {
			sections = append(sections, readmeAnchor(strings.TrimPrefix(l, "## ")))
		}
	}
	if !slices.Equal(listed, sections) {
		t.Errorf("the table of contents links %v;\nthe sections are %v", listed, sections)
	}
}

// "Going to production" covers what an operator needs before the first
// real contract, and the README names the licence, which LICENSE holds.
func TestReadmeGoingToProductionAndLicense(t *testing.T) {
	t.Parallel()
	readme := readReadme(t)
	_, prod, ok := strings.Cut(readme, "\n## Going to production\n")
	if !ok {
		t.Fatal("the README has no Going to production section")
	}
	prod, _, _ = strings.Cut(prod, "\n## ")
	for _, want := range []string{
		"### Keys and certificates from the merchant platform", "WECHATPAY_PRIVATE_KEY_FILE", "WECHATPAY_APIV3_KEY",
		"### The notify URL", "/v1/notifications/wechatpay", "contract template",
		"### Public-key mode, and moving from platform certificates",
		"### Backups",
		"### Metrics to alert on", "contractd_notifications_total", "contractd_panics_total",
		"(#running-behind-a-tls-terminating-proxy)",
	} {
		if !strings.Contains(prod, want) {
			t.Errorf("Going to production lacks %q", want)
		}
	}
	if !strings.Contains(readme, "\n## License\n") || !strings.Contains(readme, "Apache License, Version 2.0") {
		t.Error("the README does not name the licence")
	}
	lic, err := os.ReadFile("../../LICENSE")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(lic), "Apache License\n                           Version 2.0, January 2004") ||
		!strings.Contains(string(lic), "END OF TERMS AND CONDITIONS") {
		t.Error("LICENSE is not the Apache License 2.0 text")
	}
}
