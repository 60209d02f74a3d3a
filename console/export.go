package console

import (
	"encoding/csv"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/contractd/contractd/domain"
)

// csvColumns are the exported columns; openids are masked (revealing one
// is a logged act of its own).
var csvColumns = []string{"sub_mchid", "out_contract_code", "product", "channel", "plan_id", "service_id", "state",
	"contract_id", "openid_masked", "user_display_name", "contract_display_account", "session_expires_at",
	"signed_at", "terminated_at", "termination_mode", "expired_at", "last_error_code", "version", "created_at", "updated_at"}

// csvText makes a text cell of the export inert in a spreadsheet: a cell
// that begins with '=', '+', '-', '@', a tab or a carriage return would be
// run as a formula (OWASP's CSV injection rule), so it gets a leading '
// that spreadsheets show as text. Other cells are unchanged.
func csvText(v string) string {
	if v != "" && strings.IndexByte("=+-@\t\r", v[0]) >= 0 {
		return "'" + v
	}
	return v
}

// exportCSV streams the filtered list as CSV, one page of the list at a
// time, so that memory does not grow with the export. It reads through
// Reads: on a standby, each page is as old as its replication lag.
func (c *Console) exportCSV(w http.ResponseWriter, r *http.Request) {
	f, _, err := listFilter(r.URL.Query())
	if err != nil {
		c.fail(w, r, err)
		return
	}
	f.Limit, f.Cursor = domain.MaxListLimit, ""
	items, next, err := c.opt.Reads.List(r.Context(), f)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="contracts.csv"`)
	cw := csv.NewWriter(w)
	_ = cw.Write(csvColumns)
	ts := func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	}
	num := func(p *int64) string {
		if p == nil {
			return ""
		}
		return strconv.FormatInt(*p, 10)
	}
	rows := 0
	for {
		for _, ct := range items {
			lastErr := ""
			if ct.LastError != nil {
				lastErr = ct.LastError.Code
			}
			t := csvText
			_ = cw.Write([]string{t(ct.SubMchID), t(ct.OutContractCode), t(string(ct.Product)), t(string(ct.Channel)), num(ct.PlanID), num(ct.ServiceID),
				t(string(ct.State)), t(ct.ContractID), t(mask(ct.OpenID)), t(ct.UserDisplayName), t(ct.ContractDisplayAccount), ts(ct.SessionExpiresAt),
				ts(ct.SignedAt), ts(ct.TerminatedAt), t(ct.TerminationMode), ts(ct.ExpiredAt), t(lastErr),
				strconv.FormatInt(ct.Version, 10), ct.CreatedAt.UTC().Format(time.RFC3339), ct.UpdatedAt.UTC().Format(time.RFC3339)})
		}
		rows += len(items)
		cw.Flush()
		if next == "" || cw.Error() != nil || r.Context().Err() != nil {
			break
		}
		f.Cursor = next
		if items, next, err = c.opt.Reads.List(r.Context(), f); err != nil {
			// The header is sent: the cut-off shows as a truncated file.
			c.log.ErrorContext(r.Context(), "console CSV export cut off", "rows", rows, "error", err.Error())
			return
		}
	}
	c.log.InfoContext(r.Context(), "console CSV export", "rows", rows)
}
