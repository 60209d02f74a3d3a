package httpapi

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/contractd/contractd/domain"
	"github.com/labstack/echo/v5"
)

// writeContract answers a contract with status: the bytes encoding/json's
// Encoder (Echo's c.JSON) would write for it, made by appendContract
// without reflection. GET /v1/contracts/{code} is the service's most
// frequent answer, and reflection over the contract was a tenth of its CPU
// (BENCHMARKS.md, issue 19). The bytes are made in a buffer kept for the
// next answer (the response copies them), so that the most frequent answer
// leaves no kilobyte of garbage behind.
func (a *API) writeContract(c *echo.Context, status int, ct domain.Contract) error {
	buf, _ := a.answerBufs.Get().(*[]byte)
	if buf == nil {
		buf = new([]byte)
	}
	defer a.answerBufs.Put(buf)
	b, err := appendContract((*buf)[:0], ct)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	*buf = b
	return c.JSONBlob(status, b)
}

// appendContract appends the JSON of ct exactly as json.Marshal makes it
// from domain.Contract's field tags: the same fields in the same order, the
// same omissions, strings escaped the same way (HTML characters included),
// times as time.Time.MarshalJSON writes them. Anything the fast path does
// not cover (a string needing escapes, a time outside years 0-9999) is
// handed to encoding/json itself, so the answer never differs; the test
// holds the two equal over every kind of field value.
func appendContract(b []byte, ct domain.Contract) ([]byte, error) {
	var err error
	field := func(name string) { b = append(append(append(b, ',', '"'), name...), '"', ':') }
	str := func(name, v string) {
		field(name)
		b = appendJSONString(b, v)
	}
	optStr := func(name, v string) {
		if v != "" {
			str(name, v)
		}
	}
	optInt := func(name string, v *int64) {
		if v != nil {
			field(name)
			b = strconv.AppendInt(b, *v, 10)
		}
	}
	at := func(name string, t time.Time) {
		if err == nil {
			field(name)
			b, err = appendJSONTime(b, t)
		}
	}
	optAt := func(name string, t *time.Time) {
		if t != nil {
			at(name, *t)
		}
	}

	b = append(b, `{"sub_mchid":`...)
	b = appendJSONString(b, ct.SubMchID)
	str("out_contract_code", ct.OutContractCode)
	str("product", string(ct.Product))
	str("channel", string(ct.Channel))
	optInt("plan_id", ct.PlanID)
	optInt("service_id", ct.ServiceID)
	str("state", string(ct.State))
	field("version")
	b = strconv.AppendInt(b, ct.Version, 10)
	optAt("session_expires_at", ct.SessionExpiresAt)
	optStr("contract_id", ct.ContractID)
	optStr("openid", ct.OpenID)
	optStr("user_display_name", ct.UserDisplayName)
	optStr("contract_display_account", ct.ContractDisplayAccount)
	optAt("signed_at", ct.SignedAt)
	optAt("terminated_at", ct.TerminatedAt)
	optStr("termination_mode", ct.TerminationMode)
	optAt("expired_at", ct.ExpiredAt)
	if e := ct.LastError; e != nil {
		field("last_error")
		b = append(b, `{"code":`...)
		b = appendJSONString(b, e.Code)
		str("message", e.Message)
		at("at", e.At)
		field("retryable")
		b = strconv.AppendBool(b, e.Retryable)
		optStr("op", e.Op)
		b = append(b, '}')
	}
	at("created_at", ct.CreatedAt)
	at("updated_at", ct.UpdatedAt)
	return append(b, '}'), err
}

// appendJSONString appends s as a JSON string. A string of printable ASCII
// without `"`, `\` or the characters encoding/json escapes for HTML (`<`,
// `>`, `&`) is written as it is; any other goes through encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendJSONTime appends t as time.Time.MarshalJSON does (RFC 3339 with
// nanoseconds, quoted). A time that is not UTC (the API's times all are)
// or outside years 0-9999 goes through encoding/json, with its error for
// what it refuses.
func appendJSONTime(b []byte, t time.Time) ([]byte, error) {
	if y := t.Year(); y < 0 || y > 9999 || t.Location() != time.UTC {
		q, err := json.Marshal(t)
		return append(b, q...), err
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), nil
}
