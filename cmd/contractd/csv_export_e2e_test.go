package main

import (
	"encoding/csv"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"testing"
)

// csvTextColumns are the export's text columns and the contracts column
// each is read from ("openid" is exported masked as openid_masked).
var csvTextColumns = []struct{ export, column string }{
	{"sub_mchid", "sub_mchid"}, {"out_contract_code", "out_contract_code"}, {"contract_id", "contract_id"},
	{"openid_masked", "openid"}, {"user_display_name", "user_display_name"},
	{"contract_display_account", "contract_display_account"}, {"termination_mode", "termination_mode"},
}

// csvDangerousPrefixes start a cell a spreadsheet would run as a formula
// (OWASP's CSV injection list).
var csvDangerousPrefixes = []string{"=", "+", "-", "@", "\t", "\r"}

// consoleMask is the console's openid mask, restated: the first four
// characters, six bullets, the last two.
func consoleMask(s string) string {
	r := []rune(s)
	if len(r) <= 6 {
		return strings.Repeat("•", len(r))
	}
	return string(r[:4]) + "••••••" + string(r[len(r)-2:])
}

// Issue 18, point 2: every text cell of the contracts export that a
// spreadsheet would run as a formula is prefixed with ', in every text
// column (the masked openid included); harmless cells are unchanged. The
// file is read back with encoding/csv, as a spreadsheet parses it.
func TestConsoleCSVExportNeutralisesFormulas(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	// plan_id identifies each row; harmless values hold the dangerous
	// characters anywhere but first.
	harmless := map[string]string{
		"sub_mchid": "", "out_contract_code": "ok-1=1", "contract_id": "2026+0001", "openid": "o=user-1+2@x",
		"user_display_name": "Zhang San - A@B", "contract_display_account": "acc 1+1", "termination_mode": "MERCHANT",
	}
	type row struct {
		planID int64
		values map[string]string
	}
	var rows []row
	plan := int64(1000)
	add := func(values map[string]string) {
		plan++
		if values["contract_id"] == harmless["contract_id"] {
			values["contract_id"] += fmt.Sprint(plan) // unique, like WeChat's
		}
		rows = append(rows, row{plan, values})
		cols, args := []string{"product", "channel", "state", "plan_id"}, []any{"papay", "app", "signed", plan}
		for k, v := range values {
			cols, args = append(cols, k), append(args, v)
		}
		marks := make([]string, len(args))
		for i := range marks {
			marks[i] = fmt.Sprintf("$%d", i+1)
		}
		if _, err := s.DB.Pool.Exec(t.Context(), `INSERT INTO contracts (`+strings.Join(cols, ", ")+`) VALUES (`+strings.Join(marks, ", ")+`)`, args...); err != nil {
			t.Fatal(err)
		}
	}
	add(maps.Clone(harmless))
	payloads := map[string]string{"=": `HYPERLINK("http://evil.example","x")`, "+": "1+1", "-": "2+3", "@": "SUM(1,1)",
		"\t": "=1+1", "\r": "=cmd|' /C calc'!A0"}
	for _, p := range csvDangerousPrefixes {
		for i, col := range csvTextColumns {
			v := maps.Clone(harmless)
			// Keys stay unique: the code carries the row's number.
			v["out_contract_code"] = fmt.Sprintf("c%d-%d", plan+1, i)
			v[col.column] = p + payloads[p] + fmt.Sprint(plan+1)
			add(v)
		}
	}
	// The issue's own examples, first character as typed.
	for _, ex := range []string{`=HYPERLINK("x")`, `=cmd|' /C calc'!A0`, `+1+1`} {
		v := map[string]string{}
		for k := range harmless {
			v[k] = ex
		}
		v["out_contract_code"] = ex + fmt.Sprint(plan+1)
		v["contract_id"] = ex + fmt.Sprint(plan+1)
		add(v)
	}

	c := newConsoleClient(t, s.URL)
	if a := c.signIn(opsToken); a.Status != http.StatusSeeOther {
		t.Fatalf("sign-in: %d %.300s", a.Status, a.Body)
	}
	a := c.do(http.MethodGet, "/ops/contracts.csv", nil)
	if a.Status != http.StatusOK {
		t.Fatalf("export: %d %.300s", a.Status, a.Body)
	}
	records, err := csv.NewReader(strings.NewReader(a.Body)).ReadAll()
	if err != nil {
		t.Fatalf("the export does not parse as CSV: %v", err)
	}
	header := records[0]
	idx := map[string]int{}
	for i, h := range header {
		idx[h] = i
	}
	byPlan := map[string][]string{}
	for _, r := range records[1:] {
		if len(r) != len(header) {
			t.Fatalf("row of %d cells, header has %d: %q", len(r), len(header), r)
		}
		byPlan[r[idx["plan_id"]]] = r
	}
	if len(byPlan) != len(rows) {
		t.Fatalf("the export holds %d rows, %d were stored", len(byPlan), len(rows))
	}
	prefixed := 0
	for _, want := range rows {
		got := byPlan[fmt.Sprint(want.planID)]
		if got == nil {
			t.Fatalf("plan %d is missing from the export", want.planID)
		}
		for _, col := range csvTextColumns {
			orig := want.values[col.column]
			if col.column == "openid" {
				orig = consoleMask(orig)
			}
			exp := orig
			if orig != "" && strings.ContainsAny(orig[:1], "=+-@\t\r") {
				exp = "'" + orig
				prefixed++
			}
			if cell := got[idx[col.export]]; cell != exp {
				t.Errorf("plan %d %s: cell %q, want %q", want.planID, col.export, cell, exp)
			}
		}
		// Cells that are no text column are never prefixed.
		for i, cell := range got {
			if strings.HasPrefix(cell, "'") && !isTextColumn(header[i]) {
				t.Errorf("plan %d %s: %q was prefixed", want.planID, header[i], cell)
			}
		}
	}
	// Every dangerous prefix in every text column, and the examples.
	if min := len(csvDangerousPrefixes) * len(csvTextColumns); prefixed < min {
		t.Fatalf("%d cells were dangerous, want at least %d", prefixed, min)
	}
}

func isTextColumn(name string) bool {
	for _, c := range csvTextColumns {
		if c.export == name {
			return true
		}
	}
	return false
}
