package domain

import (
	"strconv"
	"strings"
	"time"
)

// ListParams are the query parameters ParseListFilter reads, in the order
// their errors are listed.
var ListParams = []string{"state", "channel", "plan_id", "service_id", "sub_mchid", "created_from", "created_to", "limit", "cursor"}

// ParseListFilter reads the list filters of api.md's GET /v1/contracts from
// query values (url.Values is one): state and channel must be known values,
// plan_id and service_id positive integers, sub_mchid empty or a code of the
// out_contract_code rule, created_from and created_to RFC3339 times, limit
// 1 to MaxListLimit; cursor is passed on as it is. A parameter that is
// absent does not filter; sub_mchid present but empty filters on contracts
// without a sub-merchant. Other parameters are ignored. It returns a
// PARAM_ERROR listing each rejected field, whose message names them all.
func ParseListFilter(values map[string][]string) (ListFilter, error) {
	get := func(name string) (string, bool) {
		v, ok := values[name]
		if !ok || len(v) == 0 {
			return "", false
		}
		return v[0], true
	}
	var f ListFilter
	var fields []FieldError
	bad := func(field, reason string) { fields = append(fields, FieldError{Field: field, Reason: reason}) }
	if v, _ := get("state"); v != "" {
		if f.State = State(v); !f.State.Valid() {
			bad("state", "is not a lifecycle state")
		}
	}
	if v, _ := get("channel"); v != "" {
		if f.Channel = Channel(v); !f.Channel.Valid() {
			bad("channel", "is not a signing channel")
		}
	}
	positive := func(name string) *int64 {
		v, _ := get(name)
		if v == "" {
			return nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			bad(name, "must be a positive integer")
			return nil
		}
		return &n
	}
	f.PlanID, f.ServiceID = positive("plan_id"), positive("service_id")
	if v, ok := get("sub_mchid"); ok {
		if why := CheckCode(v); v != "" && why != "" {
			bad("sub_mchid", why)
		}
		f.SubMchID = &v
	}
	when := func(name string) *time.Time {
		v, _ := get(name)
		if v == "" {
			return nil
		}
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			bad(name, "must be an RFC3339 time")
			return nil
		}
		return &t
	}
	f.CreatedFrom, f.CreatedTo = when("created_from"), when("created_to")
	if v, _ := get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxListLimit {
			bad("limit", "must be between 1 and "+strconv.Itoa(MaxListLimit))
		} else {
			f.Limit = n
		}
	}
	f.Cursor, _ = get("cursor")
	if len(fields) > 0 {
		return f, paramError("bad query parameters", fields)
	}
	return f, nil
}

// ParseKey reads a contract's key from outside: code is its
// out_contract_code, required, and subMchID its sub_mchid, empty for none;
// both are held to the out_contract_code rule. It returns a PARAM_ERROR
// listing each rejected field, whose message names them all.
func ParseKey(code, subMchID string) (Key, error) {
	k := Key{SubMchID: subMchID, OutContractCode: code}
	var fields []FieldError
	if why := CheckCode(code); why != "" {
		fields = append(fields, FieldError{Field: "out_contract_code", Reason: why})
	}
	if subMchID != "" {
		if why := CheckCode(subMchID); why != "" {
			fields = append(fields, FieldError{Field: "sub_mchid", Reason: why})
		}
	}
	if len(fields) > 0 {
		return k, paramError("bad contract key", fields)
	}
	return k, nil
}

// paramError is a PARAM_ERROR whose message says what and lists each
// rejected field with its reason.
func paramError(what string, fields []FieldError) error {
	s := make([]string, len(fields))
	for i, fe := range fields {
		s[i] = fe.Field + " " + fe.Reason
	}
	return &Error{Code: CodeParamError, Message: what + ": " + strings.Join(s, "; "), Fields: fields}
}
