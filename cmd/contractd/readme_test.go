package main

import (
	"os"
	"strings"
	"testing"

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
